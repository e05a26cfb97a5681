using BenchmarkDotNet.Attributes;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Revocation latency of one page the kernel does not use — a CPU read of a device-exclusive page until its PTE is
/// restored — with the device idle, and with batches running on 64 other pages of the same space:
/// <see cref="OtherPageRevocationWorkload"/>. One revocation per invocation (the page is granted again in the
/// iteration setup). A page the running batch uses: <see cref="RevocationInUseBenchmarks"/>.
/// </summary>
[BenchmarkCategory("RevocationLatency")]
[FullyOptimized]
public class RevocationWhileRunningBenchmarks
{
    private ExclusiveDevice _device = null!;
    private OtherPageRevocationWorkload _workload = null!;

    [Params(false, true)]
    public bool KernelRunning { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _device = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _workload = new OtherPageRevocationWorkload(_device);
        if (KernelRunning)
        {
            _workload.StartBusy();
        }
    }

    [IterationSetup]
    public void Grant() => _workload.Grant();

    [Benchmark]
    public int Revoke() => _workload.Revoke();

    [GlobalCleanup]
    public void Cleanup()
    {
        _workload.StopBusy();
        _workload.Dispose();
        _device.Dispose();
    }
}
