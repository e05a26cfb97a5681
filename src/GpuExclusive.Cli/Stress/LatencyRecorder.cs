namespace GpuExclusive.Cli.Stress;

/// <summary>
/// Latency samples in microseconds, thread-safe. Keeps every sample up to <see cref="Capacity"/>, then a uniform
/// reservoir of that many (Vitter's algorithm R), so percentiles stay honest for runs of any length.
/// </summary>
internal sealed class LatencyRecorder
{
    public const int Capacity = 100_000;

    // Guards _samples, _count, _max and _random.
    private readonly Lock _lock = new();
    private readonly List<double> _samples = [];
    private long _count;
    private double _max;
    private SplitMix64 _random = new(0x5EED);

    public void Record(double microseconds)
    {
        lock (_lock)
        {
            _count++;
            _max = Math.Max(_max, microseconds);
            if (_samples.Count < Capacity)
            {
                _samples.Add(microseconds);
                return;
            }

            long slot = (long)(_random.Next() % (ulong)_count);
            if (slot < Capacity)
                _samples[(int)slot] = microseconds;
        }
    }

    public LatencySummary Summarize()
    {
        lock (_lock)
        {
            if (_samples.Count == 0)
                return new LatencySummary(0, 0, 0, 0);
            double[] sorted = [.. _samples];
            Array.Sort(sorted);
            return new LatencySummary(_count, Percentile(sorted, 0.50), Percentile(sorted, 0.99), _max);
        }
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
}

/// <summary>Count, median, 99th percentile and maximum of a latency, in microseconds.</summary>
internal readonly record struct LatencySummary(long Count, double P50, double P99, double Max);
