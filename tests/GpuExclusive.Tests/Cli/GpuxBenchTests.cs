using System.Text.Json;
using GpuExclusive.Cli;
using GpuExclusive.Cli.Bench;
using GpuExclusive.Tests.Configuration;

namespace GpuExclusive.Tests.Cli;

/// <summary><c>gpux bench</c>: help, bad input, and a tiny bounded run with its JSON report and charts.</summary>
[Collection(GpuxCollection.Name)]
public sealed class GpuxBenchTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Help_ExitsZero_AndNamesTheOptions()
    {
        GpuxResult result = GpuxRunner.Run("bench", "--help");

        Assert.Equal(ExitCodes.Success, result.ExitCode);
        foreach (string option in (string[])["--seconds", "--filter", "--json", "--plot", "--full", "--accelerator"])
            Assert.Contains(option, result.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("bench", "--bogus")]
    [InlineData("bench", "--seconds", "0")]
    [InlineData("bench", "--seconds", "abc")]
    [InlineData("bench", "--filter", "nothing-matches-this")]
    [InlineData("bench", "--accelerator", "tpu")]
    [InlineData("bench", "--quick", "--full")]
    public void BadFlags_PrintOneLine_AndExitTwo(params string[] args)
    {
        GpuxResult result = GpuxRunner.Run(args);

        Assert.Equal(ExitCodes.BadInput, result.ExitCode);
        Assert.Single(result.StderrLines);
        Assert.StartsWith("gpux: ", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TinyRun_ExitsZero_WritesTheJsonFields_AndCharts()
    {
        string report = Path.Combine(_temp.Path, "bench.json");
        string plots = Path.Combine(_temp.Path, "plots");

        GpuxResult result = GpuxRunner.Run("bench", "--filter", "cpu,metadata,revoke-idle", "--seconds", "0.02", "--accelerator", "cpu",
            "--json", report, "--plot", plots);

        Assert.True(result.ExitCode == ExitCodes.Success, result.Stdout + result.Stderr);
        Assert.Contains("cpu-random-read", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("verdict", result.Stdout, StringComparison.Ordinal);
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(report));
        JsonElement root = json.RootElement;
        Assert.True(root.GetProperty("machine").GetProperty("cores").GetInt32() > 0);
        Assert.Equal("Cpu", root.GetProperty("accelerator").GetProperty("kind").GetString());
        JsonElement[] rows = [.. root.GetProperty("rows").EnumerateArray()];
        Assert.Contains(rows, r => r.GetProperty("name").GetString() == "metadata-per-page");
        Assert.Contains(rows, r => r.GetProperty("name").GetString() == "revoke-idle");
        foreach (JsonElement row in rows)
        {
            Assert.True(row.GetProperty("engine").GetProperty("median").GetDouble() > 0);
            Assert.True(row.GetProperty("engine").GetProperty("p90").GetDouble() > 0);
            Assert.True(row.GetProperty("baseline").GetProperty("median").GetDouble() > 0);
            Assert.True(row.GetProperty("ratio").GetDouble() > 0);
            Assert.Contains(row.GetProperty("verdict").GetString(), (string[])["pass", "miss", "info"]);
        }

        JsonElement read = rows.Single(r => r.GetProperty("name").GetString() == "cpu-random-read");
        Assert.Equal(3, read.GetProperty("target").GetProperty("value").GetDouble());
        Assert.Empty(root.GetProperty("failures").EnumerateArray());

        string chart = Path.Combine(plots, "revocation-latency.png");
        Assert.True(File.Exists(chart), result.Stdout + result.Stderr);
        byte[] png = File.ReadAllBytes(chart);
        Assert.True(png.Length > 1000);
        Assert.Equal((byte[])[0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
    }

    [Fact]
    public void TinyRun_RevokeRunning_ListsThePageInUseRows_WithFiniteFigures()
    {
        string report = Path.Combine(_temp.Path, "bench.json");

        GpuxResult result = GpuxRunner.Run("bench", "--filter", "revoke-running", "--seconds", "0.02", "--accelerator", "cpu", "--json", report);

        Assert.True(result.ExitCode == ExitCodes.Success, result.Stdout + result.Stderr);
        JsonElement[] rows = Rows(report);
        string[] inUse =
        [
            .. from size in (string[])["64k", "1M"]
               from pages in (string[])["1p", "64p"]
               from how in (string[])["granted", "faulted"]
               select $"revoke-running-in-use-{how}-{pages}-{size}",
        ];
        Assert.Equal(["revoke-running-other-page", .. inUse], rows.Select(r => r.GetProperty("name").GetString()));
        Assert.Contains("does not use", rows[0].GetProperty("note").GetString(), StringComparison.Ordinal);
        foreach (JsonElement row in rows.Skip(1))
        {
            string name = row.GetProperty("name").GetString()!;
            JsonElement engine = row.GetProperty("engine");
            JsonElement figures = row.GetProperty("figures");
            double median = engine.GetProperty("median").GetDouble();
            Assert.True(median > 0 && double.IsFinite(median), name);
            Assert.True(figures.GetProperty("p99").GetDouble() >= median, name);
            Assert.True(figures.GetProperty("max").GetDouble() >= figures.GetProperty("p99").GetDouble(), name);
            // The samples are exactly the touches that found the page device-held, and at least one did.
            long found = figures.GetProperty("touchesFoundHeld").GetInt64();
            Assert.Equal(found, engine.GetProperty("samples").GetInt64());
            Assert.InRange(found, 1, figures.GetProperty("touches").GetInt64());
            Assert.True(figures.GetProperty("batchMedianNs").GetDouble() > 0, name);
            Assert.True(row.GetProperty("baseline").GetProperty("median").GetDouble() > 0, name);
            JsonElement target = row.GetProperty("target");
            Assert.Equal(50_000, target.GetProperty("value").GetDouble());
            Assert.Equal(1_000_000, target.GetProperty("p99Value").GetDouble());
            Assert.Contains(row.GetProperty("verdict").GetString(), (string[])["pass", "miss"]);
            Assert.Contains($"  {name}: p99 ", result.Stdout, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void CpuReaderRows_BothLayouts_CountTheReadersReads()
    {
        // In process, on a batch of 64k adds: through the command line the batch is 2M (seconds of a test run).
        using var suite = new BenchSuite(new BenchOptions(0.001, Full: false, []) { ReaderBatchOps = 1 << 16 },
            () => ExclusiveDevice.Open(AcceleratorKind.Cpu), _ => { });

        BenchRow[] rows = [.. suite.Run("atomics").Where(r => r.Name.StartsWith("atomics-cpu-reader", StringComparison.Ordinal))];

        Assert.Equal(["atomics-cpu-reader-1p-64k", "atomics-cpu-reader-64p-64k"], rows.Select(r => r.Name));
        foreach (BenchRow row in rows)
        {
            Assert.True(row.Ratio is > 0 and < double.PositiveInfinity, row.Name);
            Assert.Equal("undisturbed", row.BaselineLabel);
            Assert.Equal(new Target(TargetKind.RatioAtMost, 2, "≤ 2× slower"), row.Target);
            var figures = row.Figures.ToDictionary(f => f.Name, f => f.Value);
            Assert.True(figures["readerReadsPerBatch"] >= 1, row.Name);
            Assert.True(figures["batches"] >= BenchSuite.MinReaderPairs, row.Name);
            // The reader's first read comes before the batch starts and takes the page back: each batch faults it in.
            Assert.True(figures["deviceFaultsPerBatch"] >= 1, row.Name);
        }
    }

    [Fact]
    public void FullMode_AddsTheTwentyMillionOpBatch_ToThePageInUseRows()
    {
        Assert.Equal([1 << 16, 1 << 20], new BenchOptions(0.5, Full: false, []).InUseBatchSizes);
        Assert.Equal([1 << 16, 1 << 20, 20 << 20], new BenchOptions(0.5, Full: true, []).InUseBatchSizes);
    }

    private static JsonElement[] Rows(string report)
    {
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Empty(json.RootElement.GetProperty("failures").EnumerateArray());
        return [.. json.RootElement.GetProperty("rows").EnumerateArray().Select(r => r.Clone())];
    }
}
