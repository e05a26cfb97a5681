using System.Runtime.InteropServices;
using System.Text.Json;

namespace GpuExclusive.Cli.Bench;

/// <summary>Machine facts printed with a run and written to its JSON report.</summary>
internal sealed record MachineInfo(string Cpu, int Cores, string Os, string Runtime, string Accelerator, string AcceleratorKind, double TimerOverheadNs)
{
    public static MachineInfo Collect(ExclusiveDevice? device) => new(
        CpuModel(),
        Environment.ProcessorCount,
        RuntimeInformation.OSDescription,
        RuntimeInformation.FrameworkDescription,
        device?.Name ?? "(none opened)",
        device?.Kind.ToString() ?? "none",
        TimerOverhead());

    private static string CpuModel()
    {
        try
        {
            string? line = File.Exists("/proc/cpuinfo")
                ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))
                : null;
            return line is null ? RuntimeInformation.ProcessArchitecture.ToString() : line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException)
        {
            return RuntimeInformation.ProcessArchitecture.ToString();
        }
    }

    /// <summary>Median cost of two back-to-back Stopwatch reads: what each singly timed sample includes.</summary>
    private static double TimerOverhead()
    {
        var samples = new List<double>(4096);
        for (int i = 0; i < 4096; i++)
        {
            long a = System.Diagnostics.Stopwatch.GetTimestamp();
            long b = System.Diagnostics.Stopwatch.GetTimestamp();
            samples.Add(Sampler.Nanoseconds(b - a));
        }

        return Stats.From(samples).Median;
    }
}

/// <summary>The <c>--json</c> report: machine, options, and every row with absolute figures, ratio, target and verdict.</summary>
internal static class BenchReport
{
    public static void Write(string path, MachineInfo machine, BenchOptions options, IReadOnlyList<BenchRow> rows,
        IReadOnlyList<(string Group, string Error)> failures, IReadOnlyList<string> plots, double elapsedSeconds)
    {
        using FileStream stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("tool", "gpux bench");
        json.WriteString("timestamp", DateTimeOffset.UtcNow);
        json.WriteNumber("elapsedSeconds", Math.Round(elapsedSeconds, 2));
        json.WriteStartObject("machine");
        json.WriteString("cpu", machine.Cpu);
        json.WriteNumber("cores", machine.Cores);
        json.WriteString("os", machine.Os);
        json.WriteString("runtime", machine.Runtime);
        json.WriteNumber("timerOverheadNs", Math.Round(machine.TimerOverheadNs, 1));
        json.WriteEndObject();
        json.WriteStartObject("accelerator");
        json.WriteString("kind", machine.AcceleratorKind);
        json.WriteString("name", machine.Accelerator);
        json.WriteEndObject();
        json.WriteStartObject("options");
        json.WriteNumber("secondsPerMeasurement", options.SecondsPerMeasurement);
        json.WriteBoolean("full", options.Full);
        json.WriteStartArray("filters");
        foreach (string filter in options.Filters)
            json.WriteStringValue(filter);
        json.WriteEndArray();
        json.WriteEndObject();

        json.WriteStartArray("rows");
        foreach (BenchRow row in rows)
        {
            json.WriteStartObject();
            json.WriteString("group", row.Group);
            json.WriteString("name", row.Name);
            json.WriteString("unit", row.Unit);
            WriteSide(json, "engine", row.EngineLabel, row.Engine);
            if (row.Baseline is { } baseline)
                WriteSide(json, "baseline", row.BaselineLabel, baseline);
            if (row.Ratio is { } ratio)
                json.WriteNumber("ratio", Math.Round(ratio, 4));
            else
                json.WriteNull("ratio");
            json.WriteString("ratioMeaning", row.RatioKind == RatioKind.Time ? "engine time / baseline time (lower is better)" : "engine speed / baseline speed (higher is better)");
            if (row.Target is { } target)
            {
                json.WriteStartObject("target");
                json.WriteString("text", target.Text);
                json.WriteString("bounds", target.Kind switch
                {
                    TargetKind.RatioAtMost => "ratio <= value",
                    TargetKind.RatioAtLeast => "ratio >= value",
                    TargetKind.EngineMedianAndP99AtMost => $"engine median <= value and engine p99 <= p99Value ({row.Unit})",
                    _ => $"engine median <= value ({row.Unit})",
                });
                json.WriteNumber("value", target.Value);
                if (target.Kind == TargetKind.EngineMedianAndP99AtMost)
                    json.WriteNumber("p99Value", target.P99Value);
                json.WriteEndObject();
            }
            else
            {
                json.WriteNull("target");
            }

            json.WriteString("verdict", row.Verdict);
            if (row.Note is not null)
                json.WriteString("note", row.Note);
            if (row.Figures.Count > 0)
            {
                json.WriteStartObject("figures");
                foreach (RowFigure figure in row.Figures)
                    json.WriteNumber(figure.Name, Math.Round(figure.Value, 3));
                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteStartArray("failures");
        foreach (var (group, error) in failures)
        {
            json.WriteStartObject();
            json.WriteString("group", group);
            json.WriteString("error", error);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteStartArray("plots");
        foreach (string plot in plots)
            json.WriteStringValue(plot);
        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static void WriteSide(Utf8JsonWriter json, string name, string label, Stats stats)
    {
        json.WriteStartObject(name);
        json.WriteString("label", label);
        json.WriteNumber("median", Math.Round(stats.Median, 3));
        json.WriteNumber("p90", Math.Round(stats.P90, 3));
        json.WriteNumber("min", Math.Round(stats.Min, 3));
        json.WriteNumber("mean", Math.Round(stats.Mean, 3));
        json.WriteNumber("samples", stats.Samples);
        json.WriteEndObject();
    }
}
