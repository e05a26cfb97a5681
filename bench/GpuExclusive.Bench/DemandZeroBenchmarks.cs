using BenchmarkDotNet.Attributes;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Demand-zero fault-in, per page: the first write to each of 1024 pages of a fresh mapping, the engine's fault
/// (<see cref="DemandZeroWorkload"/>) against Linux's minor fault on the first write of each page of a fresh anonymous
/// <c>mmap</c> (<see cref="MinorFaultWorkload"/>) — the kernel doing the same job (DESIGN §7 uses it as the yardstick).
/// </summary>
/// <remarks>
/// Mapping and unmapping are outside the measurement ([IterationSetup]/[IterationCleanup]), so each iteration is a
/// single invocation over a fresh mapping: <see cref="InvocationCountAttribute"/> 1, and more iterations than the
/// default short job because one invocation is only milliseconds.
/// </remarks>
[InvocationCount(1, unrollFactor: 1)]
[WarmupCount(5)]
[IterationCount(21)]
[FullyOptimized]
public class DemandZeroBenchmarks
{
    private const int Pages = DemandZeroWorkload.Pages;

    private DemandZeroWorkload _engine = null!;
    private MinorFaultWorkload _linux = null!;

    [GlobalSetup]
    public void Setup()
    {
        _linux = new MinorFaultWorkload(Pages);
        _engine = new DemandZeroWorkload();
    }

    [GlobalCleanup]
    public void Cleanup() => _engine.Dispose();

    [IterationSetup(Target = nameof(LinuxFirstTouch))]
    public void MapLinux() => _linux.MapFresh();

    [IterationCleanup(Target = nameof(LinuxFirstTouch))]
    public void UnmapLinux() => _linux.Unmap();

    [IterationSetup(Target = nameof(EngineFirstTouch))]
    public void MapEngine() => _engine.MapFresh();

    [IterationCleanup(Target = nameof(EngineFirstTouch))]
    public void UnmapEngine() => _engine.Unmap();

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public void LinuxFirstTouch() => _linux.WriteEach();

    [Benchmark(OperationsPerInvoke = Pages)]
    public void EngineFirstTouch() => _engine.WriteEach();
}
