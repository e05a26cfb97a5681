using System.Collections;
using System.Text.Json;
using GpuExclusive.Cli;
using GpuExclusive.Cli.Stress;
using GpuExclusive.Tests.Configuration;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuExclusive.Tests.Cli;

/// <summary>gpux commands that start ILGPU or the engine: info and short, bounded stress runs.</summary>
[Collection(GpuxCollection.Name)]
public sealed class GpuxRunTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Info_ShowsTheCpuAccelerator_AutoChoice_AndEverySettingsSource()
    {
        string file = _temp.Write("""{ "Engine": { "StopPollIntervalMicroseconds": 75 } }""");
        var environment = new Hashtable { ["GPUX_ENGINE__KERNELGROUPS"] = "8" };

        GpuxResult result = GpuxRunner.Run(environment, "info", "--config", file, "--pool-pages", "123");

        Assert.Equal(ExitCodes.Success, result.ExitCode);
        Assert.Contains("CPUAccelerator", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("Auto picks: ", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("Page pool: 123 frames", result.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"Engine:PoolPages\s*│\s*123\s*│\s*CommandLine", result.Stdout);
        Assert.Matches(@"Engine:KernelGroups\s*│\s*8\s*│\s*Environment\s*│\s*GPUX_ENGINE__KERNELGROUPS", result.Stdout);
        Assert.Matches(@"Engine:StopPollIntervalMicroseconds\s*│\s*75\s*│\s*File", result.Stdout);
        Assert.Matches(@"Engine:KernelGroupSize\s*│\s*0\s*│\s*Default", result.Stdout);
    }

    [Fact]
    public void Stress_ShortRun_HoldsEveryInvariant_AndReturnsEveryFrame()
    {
        string report = Path.Combine(_temp.Path, "report.json");

        GpuxResult result = GpuxRunner.Run("stress", "--seconds", "1", "--pages", "64", "--cpu-threads", "2", "--seed", "7", "--json", report);

        Assert.True(result.ExitCode == ExitCodes.Success, result.Stdout + result.Stderr);
        Assert.Contains("seed 7", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("PASS", result.Stdout, StringComparison.Ordinal);
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(report));
        JsonElement root = json.RootElement;
        Assert.Equal("passed", root.GetProperty("result").GetString());
        Assert.Equal(root.GetProperty("pool").GetProperty("capacity").GetInt64(), root.GetProperty("pool").GetProperty("freePagesAfterDispose").GetInt64());
        Assert.True(root.GetProperty("operations").GetProperty("atomicAdds").GetInt64() > 0);
        Assert.True(root.GetProperty("operations").GetProperty("churnTotal").GetInt64() > 0);
    }

    [Fact]
    public void Stress_WithAnOperationBudget_StopsAtExactlyThatMany()
    {
        string report = Path.Combine(_temp.Path, "report.json");

        GpuxResult result = GpuxRunner.Run("stress", "--seconds", "60", "--ops", "5000", "--pages", "4", "--cpu-threads", "2", "--json", report);

        Assert.True(result.ExitCode == ExitCodes.Success, result.Stdout + result.Stderr);
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Equal(5000, json.RootElement.GetProperty("operations").GetProperty("workerTotal").GetInt64());
        Assert.True(json.RootElement.GetProperty("elapsedSeconds").GetDouble() < 30);
    }

    [Fact]
    public void Stress_SameSeed_RepeatsEachThreadsSchedule()
    {
        // Which kinds of operation a thread does is fixed by the seed; only outcomes (a write rejected in a
        // read-only window) depend on timing, so the counts of pure reads must repeat exactly.
        (long, long, long) Mix(int seed)
        {
            string report = Path.Combine(_temp.Path, $"seed-{seed}-{Guid.NewGuid():N}.json");
            GpuxResult result = GpuxRunner.Run("stress", "--seconds", "60", "--ops", "20000", "--pages", "4", "--cpu-threads", "1", "--seed", seed.ToString(), "--json", report);
            Assert.True(result.ExitCode == ExitCodes.Success, result.Stdout + result.Stderr);
            using JsonDocument json = JsonDocument.Parse(File.ReadAllText(report));
            JsonElement ops = json.RootElement.GetProperty("operations");
            return (ops.GetProperty("reads").GetInt64(), ops.GetProperty("spanReads").GetInt64(), ops.GetProperty("inspects").GetInt64());
        }

        Assert.Equal(Mix(5), Mix(5));
        Assert.NotEqual(Mix(5), Mix(6));
    }

    [Fact]
    public void StressWorkload_WithAPhantomAdd_ReportsTheLostUpdate()
    {
        // Proves the final totals check can fail: one tracked add that never reached memory must be caught.
        var options = new StressOptions(Seconds: 1, MaxOperations: 2000, Seed: 1, CounterPages: 2, CpuThreads: 1, JsonPath: null)
        {
            InjectPhantomAdd = true,
        };
        using var workload = new StressWorkload(options, options.RequiredPoolPages, NullLoggerFactory.Instance);

        workload.Start();
        workload.Finish();

        Assert.NotNull(workload.Violations.First);
        Assert.Matches("own adds|tracked adds", workload.Violations.First);
        Assert.Equal(workload.PoolCapacity, workload.FreePagesAfterDispose);
    }
}
