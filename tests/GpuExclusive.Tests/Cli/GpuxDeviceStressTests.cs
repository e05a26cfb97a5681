using System.Text.Json;
using GpuExclusive.Cli;
using GpuExclusive.Cli.Commands;
using GpuExclusive.Cli.Stress;
using GpuExclusive.Tests.Configuration;

namespace GpuExclusive.Tests.Cli;

/// <summary>
/// Bounded <c>gpux stress</c> runs with devices on the CPU accelerator, fault injection, and the test hooks that prove
/// exit codes 1 (a planted lost update) and 3 (a frozen worker and a one-second watchdog).
/// </summary>
[Collection(GpuxCollection.Name)]
public sealed class GpuxDeviceStressTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose()
    {
        StressCommand.ConfigureForTests = null;
        _temp.Dispose();
    }

    [Fact]
    public void Stress_WithADeviceAndInjection_HoldsEveryInvariant_AndReportsEveryField()
    {
        string report = Path.Combine(_temp.Path, "report.json");

        GpuxResult result = GpuxRunner.Run("stress", "--seconds", "2", "--devices", "1", "--accelerator", "cpu", "--inject",
            "--cpu-threads", "2", "--pages", "16", "--seed", "42", "--json", report);

        Assert.True(result.ExitCode == ExitCodes.Success, result.Stdout + result.Stderr);
        Assert.Contains("seed 42", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("fault injection on", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("PASS", result.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"\[\s*\d+\.\ds\] cpu ops .* grants .* revocations .* device faults .* replays .* violations 0", result.Stdout);

        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(report));
        JsonElement root = json.RootElement;
        Assert.Equal("stress", root.GetProperty("command").GetString());
        Assert.Equal(42, root.GetProperty("seed").GetInt32());
        Assert.Equal("passed", root.GetProperty("result").GetString());
        Assert.Equal(0, root.GetProperty("exitCode").GetInt32());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("firstViolation").ValueKind);
        Assert.Equal(JsonValueKind.Null, root.GetProperty("watchdog").ValueKind);

        JsonElement config = root.GetProperty("config");
        Assert.Equal(1, config.GetProperty("devices").GetInt32());
        Assert.Equal("Cpu", config.GetProperty("accelerator").GetString());
        Assert.True(config.GetProperty("inject").GetBoolean());
        Assert.Equal(16, config.GetProperty("counterPages").GetInt32());
        Assert.True(config.GetProperty("settings").GetArrayLength() > 0);

        JsonElement device = root.GetProperty("device");
        foreach (string counter in (string[])["deviceBatches", "deviceOps", "permutationOps", "grants", "revocations", "deviceFaults", "pressureDiscards", "injectedDelays"])
            Assert.True(device.GetProperty(counter).GetInt64() > 0, $"{counter} is 0: the run did not exercise it");
        Assert.True(device.GetProperty("replays").GetInt64() >= 0);
        Assert.True(root.GetProperty("operations").GetProperty("atomicAdds").GetInt64() > 0);
        Assert.True(root.GetProperty("rates").GetProperty("deviceOpsPerSecond").GetDouble() > 0);

        JsonElement batch = root.GetProperty("latenciesMicroseconds").GetProperty("batch");
        Assert.True(batch.GetProperty("count").GetInt64() > 0);
        Assert.True(batch.GetProperty("p50").GetDouble() <= batch.GetProperty("p99").GetDouble());
        Assert.True(root.GetProperty("latenciesMicroseconds").TryGetProperty("cpuRevocation", out _));

        var invariants = root.GetProperty("invariants").EnumerateArray().ToDictionary(i => i.GetProperty("name").GetString()!, i => i.GetProperty("result").GetString());
        foreach (string name in (string[])["counter-totals", "exactly-once", "frame-accounting", "frames-returned", "device-behaviour", "progress"])
            Assert.Equal("held", invariants[name]);
        Assert.True(root.GetProperty("invariantChecks").GetInt64() > 0);
        Assert.Equal(root.GetProperty("pool").GetProperty("capacity").GetInt64(), root.GetProperty("pool").GetProperty("freePagesAfterDispose").GetInt64());
    }

    [Fact]
    public void Stress_WithAPlantedLostUpdate_ExitsOne_WithTheSeedAndTheFirstViolation()
    {
        StressCommand.ConfigureForTests = options => options with { InjectPhantomAdd = true };
        string report = Path.Combine(_temp.Path, "report.json");

        GpuxResult result = GpuxRunner.Run("stress", "--seconds", "30", "--ops", "3000", "--devices", "0", "--cpu-threads", "1", "--pages", "2", "--seed", "9", "--json", report);

        Assert.Equal(ExitCodes.Violation, result.ExitCode);
        Assert.Contains("FAIL", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("--seed 9", result.Stdout, StringComparison.Ordinal);
        Assert.Contains(result.StderrLines, line => line.StartsWith("gpux: invariant violated (seed 9): ", StringComparison.Ordinal));
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Equal("violation", json.RootElement.GetProperty("result").GetString());
        Assert.Matches("own adds|tracked", json.RootElement.GetProperty("firstViolation").GetString());
    }

    [Fact]
    public void Stress_WithAFrozenWorker_TheWatchdogDumpsEveryThread_AndExitsThree()
    {
        StressCommand.ConfigureForTests = options => options with { FreezeWorker = true };
        string report = Path.Combine(_temp.Path, "report.json");

        GpuxResult result = GpuxRunner.Run("stress", "--seconds", "60", "--devices", "0", "--cpu-threads", "2", "--pages", "4", "--watchdog-seconds", "1", "--json", report);

        Assert.Equal(ExitCodes.Watchdog, result.ExitCode);
        Assert.Contains("WATCHDOG", result.Stdout, StringComparison.Ordinal);
        Assert.Contains(result.StderrLines, line => line.Contains("no progress for 1 s in worker 0", StringComparison.Ordinal));
        Assert.Contains(result.StderrLines, line => line.Contains("worker 0: frozen by the FreezeWorker test hook at 0x", StringComparison.Ordinal));
        Assert.Contains(result.StderrLines, line => line.Contains("churn: ", StringComparison.Ordinal));
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Equal("watchdog", json.RootElement.GetProperty("result").GetString());
        Assert.True(json.RootElement.GetProperty("watchdog").GetArrayLength() >= 4);
        Assert.True(json.RootElement.GetProperty("elapsedSeconds").GetDouble() < 30);
    }
}
