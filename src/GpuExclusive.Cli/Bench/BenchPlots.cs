using System.Globalization;
using ScottPlot;
using ScottPlot.TickGenerators;

namespace GpuExclusive.Cli.Bench;

/// <summary>PNG charts of a run with ScottPlot (SkiaSharp, rendered headless): one per kind of figure that was measured.</summary>
internal static class BenchPlots
{
    private const int Width = 900;
    private const int Height = 540;

    /// <summary>Writes the charts the run has data for into <paramref name="directory"/>; returns their paths.</summary>
    public static List<string> Write(string directory, PlotData data, string subtitle)
    {
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        if (data.RevokeIdleNs.Count + data.RevokeRunningNs.Count + data.MinorFaultNs.Count > 0)
            written.Add(RevocationHistogram(Path.Combine(directory, "revocation-latency.png"), data, subtitle));
        if (data.PingPong.Count > 0)
            written.Add(PingPong(Path.Combine(directory, "pingpong-rate.png"), data, subtitle));
        if (data.Scale.Count > 0)
            written.Add(ScaleChart(Path.Combine(directory, "grant-fork-scale.png"), data, subtitle));
        return written;
    }

    private static string RevocationHistogram(string path, PlotData data, string subtitle)
    {
        var plot = new Plot();
        var series = new (string Label, List<double> Samples)[]
        {
            ("Linux minor fault", data.MinorFaultNs),
            ("revocation, device idle", data.RevokeIdleNs),
            ("revocation, kernel running", data.RevokeRunningNs),
        };
        double[] all = [.. series.SelectMany(s => s.Samples).Where(v => v > 0).Select(v => Math.Log10(v / 1000))];
        double low = Math.Floor(all.Min() * 4) / 4, high = Math.Ceiling(all.Max() * 4) / 4;
        if (high <= low)
            high = low + 0.25;
        const int bins = 60;
        double width = (high - low) / bins;
        foreach (var (label, samples) in series)
        {
            if (samples.Count == 0)
                continue;
            double[] counts = new double[bins];
            foreach (double v in samples.Where(v => v > 0))
                counts[Math.Clamp((int)((Math.Log10(v / 1000) - low) / width), 0, bins - 1)]++;
            double[] xs = [.. Enumerable.Range(0, bins).Select(i => low + ((i + 0.5) * width))];
            double[] fractions = [.. counts.Select(c => c / samples.Count)];
            var scatter = plot.Add.Scatter(xs, fractions);
            scatter.LegendText = $"{label} (n={samples.Count}, median {BenchRow.FormatNs(Median(samples))})";
            scatter.MarkerSize = 0;
            scatter.LineWidth = 2;
            scatter.ConnectStyle = ConnectStyle.StepHorizontal;
        }

        LogTicks(plot.Axes.Bottom, low, high, v => v.ToString("0.###", CultureInfo.InvariantCulture));
        plot.Title($"Revocation latency distribution\n{subtitle}");
        plot.XLabel("latency, µs (log scale); each sample one touch timed alone, two timer reads (~20 ns here) included");
        plot.YLabel("fraction of samples");
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(path, Width, Height);
        return path;
    }

    private static string PingPong(string path, PlotData data, string subtitle)
    {
        var plot = new Plot();
        double[] xs = [.. data.PingPong.Select(p => Math.Log10(p.Pages))];
        var cpu = plot.Add.Scatter(xs, [.. data.PingPong.Select(p => p.RoundTripsPerSecond)]);
        cpu.LegendText = "CPU ↔ device";
        var two = plot.Add.Scatter(xs, [.. data.PingPong.Select(p => p.TwoDevicesPerSecond)]);
        two.LegendText = "device ↔ device (two devices)";
        LogTicks(plot.Axes.Bottom, xs.Min(), xs.Max(), v => v.ToString("0", CultureInfo.InvariantCulture), exact: data.PingPong.Select(p => (double)p.Pages));
        plot.Title($"Ping-pong round trips per second vs pages per round trip\n{subtitle}");
        plot.XLabel("pages per round trip (log scale)");
        plot.YLabel("round trips / s");
        plot.Axes.SetLimitsY(0, data.PingPong.Max(p => Math.Max(p.RoundTripsPerSecond, p.TwoDevicesPerSecond)) * 1.1);
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(path, Width, Height);
        return path;
    }

    private static string ScaleChart(string path, PlotData data, string subtitle)
    {
        var plot = new Plot();
        double[] xs = [.. data.Scale.Select(p => Math.Log10(p.Pages))];
        void Line(string label, Func<(int Pages, double Grant, double Mprotect, double Fork, double Floor), double> y, bool dashed)
        {
            var scatter = plot.Add.Scatter(xs, [.. data.Scale.Select(p => y(p))]);
            scatter.LegendText = label;
            scatter.LineWidth = 2;
            if (dashed)
                scatter.LinePattern = LinePattern.Dashed;
        }

        Line("grant: MakeExclusive", p => p.Grant, false);
        Line("grant baseline: mprotect", p => p.Mprotect, true);
        Line("fork + dispose", p => p.Fork, false);
        Line("fork baseline: PTE-copy floor", p => p.Floor, true);
        LogTicks(plot.Axes.Bottom, xs.Min(), xs.Max(), v => v >= 1 << 20 ? $"{v / (1 << 20):0}M" : $"{v / 1024:0}k",
            exact: data.Scale.Select(p => (double)p.Pages));
        plot.Title($"Grant and fork cost per page vs populated size\n{subtitle}");
        plot.XLabel("populated pages (log scale)");
        plot.YLabel("ns per page");
        plot.Axes.SetLimitsY(0, data.Scale.Max(p => Math.Max(Math.Max(p.GrantNsPerPage, p.MprotectNsPerPage), Math.Max(p.ForkNsPerPage, p.ForkFloorNsPerPage))) * 1.1);
        plot.ShowLegend(Alignment.UpperLeft);
        plot.SavePng(path, Width, Height);
        return path;
    }

    /// <summary>Ticks for an axis whose coordinates are log10 of the value: at <paramref name="exact"/> values, or at powers of ten.</summary>
    private static void LogTicks(IAxis axis, double low, double high, Func<double, string> label, IEnumerable<double>? exact = null)
    {
        var ticks = new NumericManual();
        IEnumerable<double> values = exact ?? Enumerable.Range((int)Math.Floor(low), (int)Math.Ceiling(high) - (int)Math.Floor(low) + 1).Select(e => Math.Pow(10, e));
        foreach (double value in values)
            ticks.AddMajor(Math.Log10(value), label(value));
        axis.TickGenerator = ticks;
    }

    private static double Median(List<double> samples)
    {
        double[] sorted = [.. samples];
        Array.Sort(sorted);
        return sorted[sorted.Length / 2];
    }
}
