using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>Entry point: <c>dotnet run -c Release --project bench/GpuExclusive.Bench -- --filter '*'</c>.</summary>
internal static class Program
{
    private static void Main(string[] args)
    {
        // The metadata target (DESIGN §7) is a size, not a time: print it here, once, before any benchmark runs.
        MetadataReport.Print(Console.Out);

        var config = ManualConfig.Create(DefaultConfig.Instance)
            // A short job: the machines this runs on have 2 shared cores and no CI time budget for benchmarks, so one
            // launch with few iterations keeps a full run to minutes. The figures we report are ratios to a baseline
            // measured in the same process, which tolerates a short job far better than absolute times do.
            // `--job` on the command line still overrides this (e.g. `--job default` for a careful run).
            .AddJob(Job.Default
                .WithLaunchCount(1)        // one process per benchmark: spawning more is the slowest part on 2 cores
                .WithWarmupCount(3)        // tiered JIT reaches tier-1 (with OSR/PGO) well within three warmups
                .WithIterationCount(7)     // an odd count gives a real median; 7 keeps ±error readable on a noisy host
                .WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(250)) // half the default: time budget
                .WithId("Short"))
            // Allocations matter: an access path that allocates is a bug, and fork's allocations are its metadata cost.
            .AddDiagnoser(MemoryDiagnoser.Default)
            // The machine is shared: the median resists the outliers other engineers' builds cause better than the mean.
            .AddColumn(StatisticColumn.Median)
            // Ratio to the [Benchmark(Baseline = true)] of the same category is the number DESIGN §7 targets; show it
            // as a plain factor ("2.31") rather than BenchmarkDotNet's default "x% slower" wording in some styles.
            .WithSummaryStyle(SummaryStyle.Default.WithRatioStyle(RatioStyle.Value))
            // Each class holds several (engine, baseline) pairs; a category gives each pair its own baseline.
            .AddLogicalGroupRules(BenchmarkLogicalGroupRule.ByCategory);

        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
    }
}
