using BenchmarkDotNet.Attributes;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Revocation with the device idle — a CPU read of a device-exclusive page until its PTE is restored — against a Linux
/// minor fault measured alike (DESIGN §7: ≤ 0.1×): <see cref="IdleRevocationWorkload"/> and
/// <see cref="MinorFaultWorkload"/>, 256 pages per invocation, granted or mapped afresh in each iteration's setup.
/// </summary>
[BenchmarkCategory("Revocation")]
[FullyOptimized]
public class RevocationBenchmarks
{
    private const int Pages = IdleRevocationWorkload.Pages;

    private ExclusiveDevice _device = null!;
    private IdleRevocationWorkload _revocation = null!;
    private MinorFaultWorkload _linux = null!;

    [GlobalSetup]
    public void Setup()
    {
        _device = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _revocation = new IdleRevocationWorkload(_device);
        _linux = new MinorFaultWorkload(Pages);
    }

    [IterationSetup(Target = nameof(RevokeIdleDevice))]
    public void Grant() => _revocation.Grant();

    [IterationSetup(Target = nameof(LinuxMinorFault))]
    public void MapFresh() => _linux.MapFresh();

    [IterationCleanup(Target = nameof(LinuxMinorFault))]
    public void UnmapFresh() => _linux.Unmap();

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public int LinuxMinorFault() => _linux.ReadEach();

    [Benchmark(OperationsPerInvoke = Pages)]
    public int RevokeIdleDevice() => _revocation.RevokeEach();

    [GlobalCleanup]
    public void Cleanup()
    {
        _revocation.Dispose();
        _device.Dispose();
    }
}
