using BenchmarkDotNet.Attributes;
using GpuExclusive.Workloads;
using Perfolizer.Mathematics.OutlierDetection;

namespace GpuExclusive.Bench;

/// <summary>
/// Revocation of a page the running batch is using (DESIGN target: median ≤ 50 µs and p99 ≤ 1 ms on the CPU accelerator,
/// whatever the batch size): <see cref="InUseRevocationWorkload"/> — batches of <see cref="BatchOps"/> adds over
/// <see cref="Pages"/> pages run again and again on a thread of their own, each after its pages were
/// <see cref="Granted"/> (MakeExclusive) or taken back by the CPU (the batch faults them in itself), and the
/// benchmark reads one of those pages at a random moment while a run holds it.
/// </summary>
/// <remarks>
/// <para>
/// BenchmarkDotNet's statistics describe iterations, so here an iteration is exactly one in-use revocation
/// (<see cref="InvocationCountAttribute"/> 1, unroll 1): [IterationSetup] pauses 0–200 µs
/// (<see cref="InUseRevocationWorkload.PrepareHeldTouch"/>) and waits until a run is in progress with a randomly chosen
/// page of the batch device-held; the benchmark is the read of that page, the only timed part; [IterationCleanup]
/// counts it, an in-use revocation unless its run ended meanwhile (printed at the end: it should be every touch).
/// Median, P95 and P99 (<see cref="TailColumnsAttribute"/>) are then percentiles of single revocations, and outliers
/// are kept (<see cref="OutlierMode.DontRemove"/>): the tail is what the target bounds. No full collection is forced
/// before each iteration (<see cref="NoForcedGcAttribute"/>): it would suspend the running kernel just before each touch. Unlike gpux bench, which touches
/// at random and keeps the touches that found the page held, this waits for the page to be held, so every sample
/// revokes (how often a random touch finds it held is gpux's <c>touchesFoundHeld</c>).
/// </para>
/// <para>
/// Each case is a process of its own; a 20 M-op batch takes a second or more to prepare and each of its runs a second
/// or more, so the whole class takes a few minutes.
/// </para>
/// </remarks>
[BenchmarkCategory("RevocationInUse")]
[InvocationCount(1, unrollFactor: 1)]
[WarmupCount(20)]
[IterationCount(401)]
[Outliers(OutlierMode.DontRemove)]
[TailColumns]
[NoForcedGc]
[FullyOptimized]
public class RevocationInUseBenchmarks
{
    private ExclusiveDevice _device = null!;
    private InUseRevocationWorkload _workload = null!;

    [Params(1 << 16, 1 << 20, 20 << 20)]
    public int BatchOps { get; set; }

    [Params(1, 64)]
    public int Pages { get; set; }

    [Params(true, false)]
    public bool Granted { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _device = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _workload = new InUseRevocationWorkload(_device, BatchOps, Pages);
        _workload.Start(Granted);
    }

    [IterationSetup]
    public void WaitUntilHeld() => _workload.PrepareHeldTouch();

    [Benchmark]
    public int Revoke() => _workload.TouchPrepared();

    [IterationCleanup]
    public void CountTouch() => _workload.CountPreparedTouch();

    [GlobalCleanup]
    public void Cleanup()
    {
        try
        {
            _workload.Stop();
            Console.WriteLine($"// in-use revocations: {_workload.FoundHeld} of {_workload.Touches} touches inside the run they started in; " +
                $"{_workload.RunsCompleted} runs of {BatchOps} adds (median {_workload.MedianRunNanoseconds / 1e6:0.##} ms), " +
                $"device faults and replays {_workload.FaultsAndReplays}");
        }
        finally
        {
            _workload.Dispose();
            _device.Dispose();
        }
    }
}
