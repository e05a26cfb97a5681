using System.Collections;
using GpuExclusive.Cli;
using GpuExclusive.Tests.Configuration;

namespace GpuExclusive.Tests.Cli;

/// <summary>The gpux exit-code and output contract for help and bad input (nothing here starts the engine).</summary>
[Collection(GpuxCollection.Name)]
public sealed class GpuxCommandLineTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData("--help")]
    [InlineData("info", "--help")]
    [InlineData("stress", "--help")]
    [InlineData("scenario", "--help")]
    [InlineData("bench", "--help")]
    public void Help_PrintsUsage_AndExitsZero(params string[] args)
    {
        GpuxResult result = GpuxRunner.Run(args);

        Assert.Equal(ExitCodes.Success, result.ExitCode);
        Assert.Contains("Usage:", result.Stdout, StringComparison.Ordinal);
        Assert.Equal(string.Empty, result.Stderr);
    }

    [Fact]
    public void StressHelp_DocumentsEveryOption()
    {
        GpuxResult result = GpuxRunner.Run("stress", "--help");

        foreach (string option in (string[])["--seconds", "--ops", "--seed", "--pages", "--cpu-threads", "--devices", "--inject", "--watchdog-seconds", "--json", "--config", "--log-level", "--accelerator", "--pool-pages", "--placement"])
            Assert.Contains(option, result.Stdout, StringComparison.Ordinal);
        Assert.Contains("timing", result.Stdout, StringComparison.Ordinal); // what a seed does not replay
        Assert.Contains("3 watchdog", result.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Unrecognized command or argument '--bogus'", "stress", "--bogus")]
    [InlineData("'--seconds'", "stress", "--seconds")]
    [InlineData("--seconds must be between 1 and 86400 (got -1)", "stress", "--seconds", "-1")]
    [InlineData("'abc'", "stress", "--seconds", "abc")]
    [InlineData("--seconds must be between", "stress", "--seconds", "0")]
    [InlineData("--ops must be > 0 (got -5)", "stress", "--ops", "-5")]
    [InlineData("--seed must be between 0", "stress", "--seed", "-1")]
    [InlineData("--pages must be between", "stress", "--pages", "0")]
    [InlineData("--cpu-threads must be between 1 and 256", "stress", "--cpu-threads", "0")]
    [InlineData("--cpu-threads must be between 1 and 256", "stress", "--cpu-threads", "1000")]
    [InlineData("--accelerator must be one of auto, cpu, cuda, opencl (got 'tpu')", "stress", "--accelerator", "tpu")]
    [InlineData("--accelerator must be one of", "info", "--accelerator", "2")]
    [InlineData("--log-level must be one of", "stress", "--log-level", "loud")]
    [InlineData("--placement must be one of InPlace, DeviceResident (got 'gpu')", "stress", "--placement", "gpu")]
    [InlineData("--pool-pages must be between 1 and 2147483647", "info", "--pool-pages", "0")]
    [InlineData("is too small for --pages 1000", "stress", "--pages", "1000", "--pool-pages", "100")]
    [InlineData("Required command was not provided")]
    [InlineData("Unrecognized command or argument 'bogus'", "bogus")]
    [InlineData("name a scenario or use --list", "scenario")]
    [InlineData("unknown scenario 'bogus'; scenarios: exclusive, exclusive_mprotect, exclusive_cow, ping-pong-cpu-device", "scenario", "bogus")]
    [InlineData("--devices must be between 0 and 4 (got 5)", "stress", "--devices", "5")]
    [InlineData("--devices must be between 0 and 4 (got -1)", "stress", "--devices", "-1")]
    [InlineData("--watchdog-seconds must be between 1 and 3600 (got 0)", "stress", "--watchdog-seconds", "0")]
    [InlineData("--accelerator must be one of auto, cpu, cuda, opencl (got 'gpu')", "scenario", "exclusive", "--accelerator", "gpu")]
    [InlineData("OpenCL was requested", "stress", "--accelerator", "opencl", "--seconds", "1")]
    [InlineData("OpenCL was requested", "scenario", "exclusive", "--accelerator", "opencl")]
    public void BadInput_PrintsOneLine_AndExitsTwo(string expected, params string[] args)
    {
        GpuxResult result = GpuxRunner.Run(args);

        AssertBadInput(result, expected);
    }

    [Fact]
    public void MissingConfigFile_IsBadInput_NamingTheFile()
    {
        string missing = Path.Combine(_temp.Path, "nope.json");

        AssertBadInput(GpuxRunner.Run("stress", "--config", missing), $"{missing}: file not found");
    }

    [Fact]
    public void MalformedConfigFile_IsBadInput_NamingTheFile()
    {
        string file = _temp.Write("{ \"Engine\": { \"PoolPages\": 12,, } }");

        AssertBadInput(GpuxRunner.Run("info", "--config", file), $"{file}: malformed JSON");
    }

    [Fact]
    public void UnreadableConfigFile_IsBadInput_NamingTheFile()
    {
        // A directory cannot be read as a file, whoever runs the test (root reads files whatever their mode).
        AssertBadInput(GpuxRunner.Run("stress", "--config", _temp.Path, "--seconds", "1"), _temp.Path);
    }

    [Fact]
    public void MalformedConfigFile_ForStress_IsBadInput()
    {
        string file = _temp.Write("{ \"Engine\": [ }");

        AssertBadInput(GpuxRunner.Run("stress", "--config", file, "--seconds", "1"), $"{file}: malformed JSON");
    }

    [Fact]
    public void ScenarioList_NamesEveryScenario_AndExitsZero()
    {
        GpuxResult result = GpuxRunner.Run("scenario", "--list");

        Assert.Equal(ExitCodes.Success, result.ExitCode);
        foreach (string name in (string[])["exclusive", "exclusive_mprotect", "exclusive_cow", "ping-pong-cpu-device", "ping-pong-two-devices", "fork-storm", "mprotect-storm", "discard-under-load"])
            Assert.Matches($"(?m)^{name} ", result.Stdout);
    }

    [Fact]
    public void UnknownConfigKey_IsBadInput_NamingFileAndKey()
    {
        string file = _temp.Write("""{ "Engine": { "PoolPagez": 12 } }""");

        AssertBadInput(GpuxRunner.Run("stress", "--config", file, "--seconds", "1"), $"{file}: Engine:PoolPagez: unknown key");
    }

    [Fact]
    public void BadEnvironmentVariable_IsBadInput_NamingTheVariable()
    {
        var environment = new Hashtable { ["GPUX_ENGINE__POOLPAGES"] = "many" };

        AssertBadInput(GpuxRunner.Run(environment, "info"), "environment variable GPUX_ENGINE__POOLPAGES: Engine:PoolPages: 'many' is not a whole number");
    }

    [Fact]
    public void UnwritableJsonReport_IsBadInput_BeforeTheRunStarts()
    {
        string path = Path.Combine(_temp.Path, "no-such-dir", "report.json");

        GpuxResult result = GpuxRunner.Run("stress", "--json", path, "--seconds", "1");

        AssertBadInput(result, $"cannot write --json {path}");
    }

    private static void AssertBadInput(GpuxResult result, string expected)
    {
        Assert.Equal(ExitCodes.BadInput, result.ExitCode);
        string line = Assert.Single(result.StderrLines);
        Assert.StartsWith("gpux: ", line, StringComparison.Ordinal);
        Assert.Contains(expected, line, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, result.Stdout);
    }
}

/// <summary>
/// gpux runs share the console (Ctrl+C handler, logger) and the two CI cores: one at a time, and never beside the device
/// tests (the CPU accelerator's resident kernel polls a core, and one device's residency ends another's).
/// </summary>
public static class GpuxCollection
{
    public const string Name = GpuExclusive.Tests.Device.DeviceCollection.Name;
}
