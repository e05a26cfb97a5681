using System.Text.Json;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The <c>--json</c> report. The file is opened before the run starts, so an unwritable path is bad input (exit 2)
/// rather than a lost report after minutes of work.
/// </summary>
internal sealed class StressReportFile : IDisposable
{
    private readonly FileStream _stream;

    private StressReportFile(FileStream stream) => _stream = stream;

    public static StressReportFile Create(string path)
    {
        try
        {
            return new StressReportFile(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UsageException($"cannot write --json {path}: {e.Message}");
        }
    }

    public void Write(StressOptions options, EngineSettings settings, StressWorkload workload, StressStats totals, int exitCode)
    {
        using var json = new Utf8JsonWriter(_stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("command", "stress");
        json.WriteNumber("seed", options.Seed);
        json.WriteString("result", exitCode == ExitCodes.Success ? "passed" : "violation");
        json.WriteNumber("exitCode", exitCode);
        if (workload.Violations.First is { } first)
            json.WriteString("firstViolation", first);
        else
            json.WriteNull("firstViolation");
        json.WriteNumber("violations", workload.Violations.Count);
        json.WriteNumber("elapsedSeconds", Math.Round(workload.Elapsed.TotalSeconds, 3));

        json.WriteStartObject("options");
        json.WriteNumber("seconds", options.Seconds);
        if (options.MaxOperations is { } max)
            json.WriteNumber("ops", max);
        else
            json.WriteNull("ops");
        json.WriteNumber("counterPages", options.CounterPages);
        json.WriteNumber("scratchPages", StressOptions.ScratchPages);
        json.WriteNumber("cpuThreads", options.CpuThreads);
        json.WriteEndObject();

        json.WriteStartObject("operations");
        foreach (var (name, count) in totals.Rows())
            json.WriteNumber(name, count);
        json.WriteNumber("workerTotal", totals.WorkerOperations);
        json.WriteNumber("churnTotal", totals.ChurnOperations);
        json.WriteEndObject();

        json.WriteStartObject("pool");
        json.WriteNumber("capacity", workload.PoolCapacity);
        json.WriteNumber("freePagesAfterDispose", workload.FreePagesAfterDispose);
        json.WriteEndObject();

        json.WriteStartArray("settings");
        foreach (SettingValue value in settings.Values)
        {
            json.WriteStartObject();
            json.WriteString("key", value.Key);
            json.WriteString("value", value.Value);
            json.WriteString("source", value.Source.ToString());
            json.WriteString("origin", value.Origin);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }

    public void Dispose() => _stream.Dispose();
}
