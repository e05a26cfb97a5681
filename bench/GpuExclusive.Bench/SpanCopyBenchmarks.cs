using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Bulk copy of 1 MiB through the engine's span Read/Write against <see cref="Buffer.MemoryCopy"/> (DESIGN §7: ≥ 0.5 of
/// memcpy speed): <see cref="SpanCopyWorkload"/>.
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class SpanCopyBenchmarks
{
    private SpanCopyWorkload _workload = null!;

    [GlobalSetup]
    public void Setup() => _workload = new SpanCopyWorkload();

    [GlobalCleanup]
    public void Cleanup() => _workload.Dispose();

    [Benchmark(Baseline = true), BenchmarkCategory("Read1MiB")]
    public void MemoryCopyRead() => _workload.MemoryCopyRead();

    [Benchmark, BenchmarkCategory("Read1MiB")]
    public void EngineRead() => _workload.EngineRead();

    [Benchmark(Baseline = true), BenchmarkCategory("Write1MiB")]
    public void MemoryCopyWrite() => _workload.MemoryCopyWrite();

    [Benchmark, BenchmarkCategory("Write1MiB")]
    public void EngineWrite() => _workload.EngineWrite();
}
