using BenchmarkDotNet.Attributes;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Grant cost per page: <c>MakeExclusive</c> over 4096 populated pages against Linux <c>mprotect</c> over as many
/// (DESIGN §7: ≤ 2×): <see cref="GrantWorkload"/>. Each iteration restores its state first, so one invocation each.
/// </summary>
[BenchmarkCategory("Grant")]
[FullyOptimized]
public class GrantBenchmarks
{
    private const int Pages = 4096;

    private ExclusiveDevice _device = null!;
    private GrantWorkload _workload = null!;

    [GlobalSetup]
    public void Setup()
    {
        _device = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _workload = new GrantWorkload(_device, Pages);
    }

    /// <summary>Every page back to a present, writable CPU PTE (revoking the previous grant), outside the measurement.</summary>
    [IterationSetup(Target = nameof(MakeExclusive))]
    public void RestorePages() => _workload.RestorePages();

    [IterationSetup(Target = nameof(LinuxMprotect))]
    public void MakeLinuxWritable() => _workload.MakeLinuxWritable();

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public int LinuxMprotect() => _workload.LinuxMprotect();

    [Benchmark(OperationsPerInvoke = Pages)]
    public int MakeExclusive() => _workload.MakeExclusive();

    [GlobalCleanup]
    public void Cleanup()
    {
        _workload.Dispose();
        _device.Dispose();
    }
}
