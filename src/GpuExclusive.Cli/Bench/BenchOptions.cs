using GpuExclusive.Workloads;

namespace GpuExclusive.Cli.Bench;

/// <summary>What <c>gpux bench</c> measures and how long: the quick-mode twin of bench/GpuExclusive.Bench.</summary>
internal sealed record BenchOptions(double SecondsPerMeasurement, bool Full, IReadOnlyList<string> Filters)
{
    public int[] ScaleSizes => Full ? [1024, 4096, 16384, 65536, 262144, 1048576] : [1024, 4096, 16384, 65536];

    public int[] PingPongSizes => Full ? [1, 4, 16, 64, 256] : [1, 4, 16, 64];

    /// <summary>Adds per batch of the revocation rows on pages a running batch uses.</summary>
    public int[] InUseBatchSizes => Full ? [1 << 16, 1 << 20, 20 << 20] : [1 << 16, 1 << 20];

    /// <summary>Adds per batch of the CPU-reader rows: 2 M (tests run a smaller batch; no option sets it).</summary>
    public int ReaderBatchOps { get; init; } = ReaderThroughputWorkload.DefaultOps;
}
