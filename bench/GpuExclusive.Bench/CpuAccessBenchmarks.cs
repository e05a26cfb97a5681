using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Single-int CPU access through the software MMU on present pages against a raw pointer (DESIGN §7: random single int
/// ≤ 3×): <see cref="CpuRandomAccessWorkload"/>, 4096 accesses per invocation over 4 MiB of populated pages.
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class CpuAccessBenchmarks
{
    private const int Ops = CpuRandomAccessWorkload.Ops;

    private CpuRandomAccessWorkload _workload = null!;

    [GlobalSetup]
    public void Setup() => _workload = new CpuRandomAccessWorkload();

    [GlobalCleanup]
    public void Cleanup() => _workload.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops), BenchmarkCategory("RandomRead")]
    public int RawRandomRead() => _workload.RawRandomRead();

    [Benchmark(OperationsPerInvoke = Ops), BenchmarkCategory("RandomRead")]
    public int EngineRandomRead() => _workload.EngineRandomRead();

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops), BenchmarkCategory("RandomWrite")]
    public void RawRandomWrite() => _workload.RawRandomWrite();

    [Benchmark(OperationsPerInvoke = Ops), BenchmarkCategory("RandomWrite")]
    public void EngineRandomWrite() => _workload.EngineRandomWrite();

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops), BenchmarkCategory("SequentialRead")]
    public int RawSequentialRead() => _workload.RawSequentialRead();

    [Benchmark(OperationsPerInvoke = Ops), BenchmarkCategory("SequentialRead")]
    public int EngineSequentialRead() => _workload.EngineSequentialRead();

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops), BenchmarkCategory("SequentialWrite")]
    public void RawSequentialWrite() => _workload.RawSequentialWrite();

    [Benchmark(OperationsPerInvoke = Ops), BenchmarkCategory("SequentialWrite")]
    public void EngineSequentialWrite() => _workload.EngineSequentialWrite();
}
