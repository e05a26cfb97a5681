using System.Diagnostics;

namespace GpuExclusive.Cli.Bench;

/// <summary>Summary of one side of a measurement: ns per operation over several timed repetitions.</summary>
internal sealed record Stats(double Median, double P90, double Min, double Mean, int Samples)
{
    /// <summary>The 99th percentile (0 for figures not sampled): reported by rows whose samples are single events.</summary>
    public double P99 { get; init; }

    /// <summary>The largest sample (0 for figures not sampled).</summary>
    public double Max { get; init; }

    public static Stats From(List<double> samples)
    {
        if (samples.Count == 0)
            throw new InvalidOperationException("no samples were taken");
        double[] sorted = [.. samples];
        Array.Sort(sorted);
        return new Stats(Quantile(sorted, 0.5), Quantile(sorted, 0.9), sorted[0], sorted.Average(), sorted.Length)
        {
            P99 = Quantile(sorted, 0.99),
            Max = sorted[^1],
        };
    }

    /// <summary>These figures for <paramref name="factor"/> operations in one (N minor faults from one).</summary>
    public Stats Scaled(double factor) => new(Median * factor, P90 * factor, Min * factor, Mean * factor, Samples) { P99 = P99 * factor, Max = Max * factor };

    private static double Quantile(double[] sorted, double q)
    {
        double position = q * (sorted.Length - 1);
        int low = (int)Math.Floor(position);
        int high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + ((sorted[high] - sorted[low]) * (position - low));
    }
}

/// <summary>
/// Stopwatch timing with a bound: warm up for a quarter of the budget (at least one call), then repeat until the
/// budget is spent, at least <see cref="MinCalls"/> calls and at most <see cref="MaxSamples"/> samples (and, where a
/// call may add no sample, on to a minimum of samples for at most three budgets more, or two seconds).
/// </summary>
internal static class Sampler
{
    public const int MinCalls = 3;
    public const int MaxSamples = 20_000;

    /// <summary>
    /// Calls <paramref name="sample"/> repeatedly; each call appends one or more samples in ns per operation (it does
    /// its own setup outside the timed part, see <see cref="Time"/>). Returns every sample taken after warmup;
    /// <paramref name="measuring"/> is called when the warmup ends (to reset counts kept beside the samples). A call that
    /// keeps only some of what it times (the touches that found a page held) may ask for <paramref name="minSamples"/>;
    /// a call that takes longer than the budget (a batch of 2 M ops under a CPU reader) may ask for fewer calls and no
    /// warmup (<paramref name="minCalls"/>, <paramref name="warmUp"/>), when its code has run before.
    /// </summary>
    public static List<double> Run(double budgetSeconds, Action<List<double>> sample, Action? measuring = null, int minSamples = 0,
        int minCalls = MinCalls, bool warmUp = true)
    {
        var discard = new List<double>();
        long warmupEnd = Stopwatch.GetTimestamp() + (long)(budgetSeconds * 0.25 * Stopwatch.Frequency);
        while (warmUp)
        {
            discard.Clear();
            sample(discard);
            warmUp = Stopwatch.GetTimestamp() < warmupEnd;
        }

        measuring?.Invoke();
        var samples = new List<double>();
        long end = Stopwatch.GetTimestamp() + (long)(budgetSeconds * 0.75 * Stopwatch.Frequency);
        long extendedEnd = end + (long)(Math.Max(budgetSeconds * 3, 2) * Stopwatch.Frequency);
        int calls = 0;
        while (samples.Count < MaxSamples)
        {
            long now = Stopwatch.GetTimestamp();
            if (calls >= minCalls && now >= end && (samples.Count >= minSamples || now >= extendedEnd))
                break;
            sample(samples);
            calls++;
        }

        return samples;
    }

    /// <summary>Nanoseconds <paramref name="body"/> takes, divided by <paramref name="operations"/>.</summary>
    public static double Time(Action body, int operations)
    {
        long start = Stopwatch.GetTimestamp();
        body();
        long stop = Stopwatch.GetTimestamp();
        return Nanoseconds(stop - start) / operations;
    }

    public static double Nanoseconds(long ticks) => ticks * 1e9 / Stopwatch.Frequency;
}
