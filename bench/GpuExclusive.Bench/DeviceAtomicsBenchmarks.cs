using BenchmarkDotNet.Attributes;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Device atomics through the engine (a one-off <c>Run(ops)</c> and a <see cref="PreparedBatch"/>) against the very
/// same ILGPU kernel launched on raw memory, and against CPU <see cref="Interlocked"/>, contended and spread
/// (DESIGN §7: engine ÷ raw kernel ≥ 0.8): <see cref="DeviceAtomicsWorkload"/>, 65536 adds per invocation.
/// </summary>
[FullyOptimized]
public class DeviceAtomicsBenchmarks
{
    private ExclusiveDevice _device = null!;
    private DeviceAtomicsWorkload _workload = null!;

    [Params(true, false)]
    public bool Contended { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _device = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _workload = new DeviceAtomicsWorkload(_device, Contended);
    }

    [Benchmark(Baseline = true)]
    public void RawKernel() => _workload.RawKernel();

    [Benchmark]
    public BatchResult Engine() => _workload.Engine();

    [Benchmark]
    public BatchResult EnginePrepared() => _workload.EnginePrepared();

    [Benchmark]
    public int CpuInterlocked() => _workload.CpuInterlocked();

    [GlobalCleanup]
    public void Cleanup()
    {
        _workload.Dispose();
        _device.Dispose();
    }
}
