using GpuExclusive.Cli;
using GpuExclusive.Cli.Scenarios;

namespace GpuExclusive.Tests.Cli;

/// <summary>Every <c>gpux scenario</c> passes on the CPU accelerator.</summary>
[Collection(GpuxCollection.Name)]
public sealed class GpuxScenarioTests
{
    public static TheoryData<string> Names => [.. ScenarioCatalog.All.Select(s => s.Name)];

    [Theory]
    [MemberData(nameof(Names))]
    public void Scenario_Passes(string name)
    {
        GpuxResult result = GpuxRunner.Run("scenario", name, "--accelerator", "cpu");

        Assert.True(result.ExitCode == ExitCodes.Success, result.Stdout + result.Stderr);
        Assert.StartsWith($"PASS {name} in ", result.Stdout, StringComparison.Ordinal);
    }
}
