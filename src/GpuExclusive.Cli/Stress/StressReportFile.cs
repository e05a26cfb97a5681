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

    public void Write(StressOptions options, EngineSettings settings, long poolPages, StressWorkload workload, StressStats totals, DeviceTotals devices, int exitCode)
    {
        using var json = new Utf8JsonWriter(_stream, new JsonWriterOptions { Indented = true });
        double seconds = Math.Max(workload.Elapsed.TotalSeconds, 1e-9);
        json.WriteStartObject();
        json.WriteString("command", "stress");
        json.WriteNumber("seed", options.Seed);
        json.WriteString("result", exitCode switch
        {
            ExitCodes.Success => "passed",
            ExitCodes.Watchdog => "watchdog",
            _ => "violation",
        });
        json.WriteNumber("exitCode", exitCode);
        if (workload.Violations.First is { } first)
            json.WriteString("firstViolation", first);
        else
            json.WriteNull("firstViolation");
        json.WriteNumber("violations", workload.Violations.Count);
        json.WriteNumber("elapsedSeconds", Math.Round(workload.Elapsed.TotalSeconds, 3));

        json.WriteStartObject("config");
        json.WriteNumber("seconds", options.Seconds);
        if (options.MaxOperations is { } max)
            json.WriteNumber("ops", max);
        else
            json.WriteNull("ops");
        json.WriteNumber("counterPages", options.CounterPages);
        json.WriteNumber("scratchPages", StressOptions.ScratchPages);
        json.WriteNumber("cpuThreads", options.CpuThreads);
        json.WriteNumber("devices", options.Devices);
        json.WriteString("accelerator", options.Accelerator.ToString());
        json.WriteString("placement", settings.PagePlacement.ToString());
        json.WriteBoolean("inject", options.Inject);
        json.WriteNumber("watchdogSeconds", options.WatchdogSeconds);
        json.WriteNumber("poolPages", poolPages);
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

        json.WriteStartObject("operations");
        foreach (var (name, count) in totals.Rows())
            json.WriteNumber(name, count);
        json.WriteNumber("workerTotal", totals.WorkerOperations);
        json.WriteNumber("churnTotal", totals.ChurnOperations);
        json.WriteEndObject();

        json.WriteStartObject("device");
        foreach (var (name, count) in DeviceRows(devices))
            json.WriteNumber(name, count);
        json.WriteEndObject();

        json.WriteStartObject("rates");
        json.WriteNumber("cpuOpsPerSecond", Math.Round(totals.WorkerOperations / seconds, 1));
        json.WriteNumber("deviceOpsPerSecond", Math.Round(devices.Ops / seconds, 1));
        json.WriteNumber("batchesPerSecond", Math.Round(devices.Batches / seconds, 1));
        json.WriteNumber("grantsPerSecond", Math.Round(devices.Grants / seconds, 1));
        json.WriteNumber("revocationsPerSecond", Math.Round(devices.Revocations / seconds, 1));
        json.WriteEndObject();

        json.WriteStartObject("latenciesMicroseconds");
        WriteLatency(json, "batch", devices.BatchLatency);
        WriteLatency(json, "cpuRevocation", devices.RevocationLatency);
        json.WriteEndObject();

        json.WriteStartArray("invariants");
        foreach (string invariant in Invariants.All)
        {
            long violated = workload.Violations.CountOf(invariant);
            json.WriteStartObject();
            json.WriteString("name", invariant);
            json.WriteString("result", violated > 0 ? "violated" : Checked(invariant, workload, options) ? "held" : "not checked");
            json.WriteNumber("violations", violated);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteNumber("invariantChecks", workload.InvariantChecks);

        json.WriteStartObject("pool");
        json.WriteNumber("capacity", workload.PoolCapacity);
        json.WriteNumber("freePagesAfterDispose", workload.FreePagesAfterDispose);
        json.WriteEndObject();

        if (workload.WatchdogDump is { } dump)
        {
            json.WriteStartArray("watchdog");
            foreach (string line in dump)
                json.WriteStringValue(line.Trim());
            json.WriteEndArray();
        }
        else
        {
            json.WriteNull("watchdog");
        }

        json.WriteEndObject();
    }

    /// <summary>Name and count of every device and engine counter, for the summary table and the JSON report.</summary>
    public static IEnumerable<(string Name, long Count)> DeviceRows(DeviceTotals devices)
    {
        yield return ("devices", devices.Devices);
        yield return ("deviceBatches", devices.Batches);
        yield return ("deviceOps", devices.Ops);
        yield return ("permutationOps", devices.PermutationOps);
        yield return ("grants", devices.Grants);
        yield return ("grantedByMakeExclusive", devices.GrantedByCalls);
        yield return ("revocations", devices.Revocations);
        yield return ("deviceFaults", devices.DeviceFaults);
        yield return ("replays", devices.Replays);
        yield return ("batchDeviceFaults", devices.BatchDeviceFaults);
        yield return ("batchReplays", devices.BatchReplays);
        yield return ("toucherRevocations", devices.TouchRevocations);
        yield return ("pressureDiscards", devices.PressureDiscards);
        yield return ("injectedDelays", devices.InjectedDelays);
        yield return ("injectedLingers", devices.InjectedLingers);
    }

    /// <summary>Whether a run of <paramref name="options"/> got to check <paramref name="invariant"/> at all.</summary>
    private static bool Checked(string invariant, StressWorkload workload, StressOptions options) => invariant switch
    {
        Invariants.CounterTotals => workload.FinalChecksRan,
        Invariants.ExactlyOnce => workload.FinalChecksRan && options.Devices > 0,
        Invariants.FrameAccounting => workload.InvariantChecks > 0,
        Invariants.ForkChildren => workload.ChildPagesInspected > 0,
        Invariants.FramesReturned => workload.FreePagesAfterDispose >= 0,
        Invariants.DeviceBehaviour => options.Devices > 0,
        Invariants.Progress => true,
        _ => workload.FinalChecksRan,
    };

    private static void WriteLatency(Utf8JsonWriter json, string name, LatencySummary latency)
    {
        json.WriteStartObject(name);
        json.WriteNumber("count", latency.Count);
        json.WriteNumber("p50", Math.Round(latency.P50, 1));
        json.WriteNumber("p99", Math.Round(latency.P99, 1));
        json.WriteNumber("max", Math.Round(latency.Max, 1));
        json.WriteEndObject();
    }

    public void Dispose() => _stream.Dispose();
}
