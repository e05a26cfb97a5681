using BenchmarkDotNet.Attributes;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Fork of a populated 256 MiB private space (65536 present, writable, dirty pages), then disposal of the child,
/// against the PTE-copy floor of <see cref="ForkWorkload"/> (its remarks say why not Linux <c>fork()</c>), with two
/// breakdowns: the fork alone, and the reverse-map work alone.
/// </summary>
/// <remarks>
/// Each iteration is one fork over a parent whose PTEs are writable again ([IterationSetup]), so every fork
/// write-protects 65536 entries and shoots down the software TLB as it would the first time.
/// </remarks>
[InvocationCount(1, unrollFactor: 1)]
[WarmupCount(3)]
[IterationCount(9)]
[FullyOptimized]
public class ForkBenchmarks
{
    private const int Pages = 65536;

    private ForkWorkload _workload = null!;

    [GlobalSetup]
    public void Setup() => _workload = new ForkWorkload(Pages);

    [GlobalCleanup]
    public void Cleanup() => _workload.Dispose();

    [IterationSetup(Targets = [nameof(EngineForkAndDispose), nameof(EngineForkOnly)])]
    public void MakeParentWritable() => _workload.MakeParentWritable();

    [IterationCleanup(Target = nameof(EngineForkOnly))]
    public void DisposeChild() => _workload.DisposeChild();

    [Benchmark(Baseline = true)]
    public long CopyPageTableArray() => _workload.CopyPageTableArray();

    [Benchmark]
    public void EngineForkAndDispose() => _workload.ForkAndDispose();

    /// <summary>Breakdown: the fork alone; the child is disposed in [IterationCleanup], outside the measurement.</summary>
    [Benchmark]
    public void EngineForkOnly() => _workload.ForkOnly();

    /// <summary>Breakdown: the reverse-map work a fork and the child's disposal do per page, alone.</summary>
    [Benchmark]
    public void ReverseMapShareAndUnshare() => _workload.ReverseMapShareAndUnshare();
}
