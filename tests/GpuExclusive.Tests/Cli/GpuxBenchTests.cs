using System.Text.Json;
using GpuExclusive.Cli;
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
}
