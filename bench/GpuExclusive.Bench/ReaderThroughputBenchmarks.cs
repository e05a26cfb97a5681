using BenchmarkDotNet.Attributes;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Device throughput under a CPU reader (DESIGN target: ≤ 2× the undisturbed time): <see cref="ReaderThroughputWorkload"/>
/// — a batch of 2 M adds over <see cref="Pages"/> pages while a CPU thread reads its first page in a tight loop, against
/// the same batch undisturbed. The Ratio column is the slowdown. One batch per invocation (each takes 0.1–1 s here), so
/// both rows run with the same invocation count and get a ratio; the reader's reads are printed at the end.
/// </summary>
[BenchmarkCategory("ReaderThroughput")]
[InvocationCount(1, unrollFactor: 1)]
[FullyOptimized]
public class ReaderThroughputBenchmarks
{
    private const int Ops = ReaderThroughputWorkload.DefaultOps;

    private ExclusiveDevice _device = null!;
    private ReaderThroughputWorkload _workload = null!;

    [Params(1, 64)]
    public int Pages { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _device = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _workload = new ReaderThroughputWorkload(_device, Pages);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops)]
    public BatchResult Undisturbed() => _workload.RunUndisturbed();

    [Benchmark(OperationsPerInvoke = Ops)]
    public BatchResult WithCpuReader() => _workload.RunWithReader();

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_workload.ReaderBatches > 0)
        {
            Console.WriteLine($"// CPU reader: {_workload.ReaderReads / _workload.ReaderBatches:N0} reads per batch over {_workload.ReaderBatches} batches; " +
                $"device faults {(double)_workload.ReaderDeviceFaults / _workload.ReaderBatches:0.#} and replays {(double)_workload.ReaderReplays / _workload.ReaderBatches:0.#} per batch");
        }

        _workload.Dispose();
        _device.Dispose();
    }
}
