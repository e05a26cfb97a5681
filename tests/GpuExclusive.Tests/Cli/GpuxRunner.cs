using System.Collections;
using GpuExclusive.Cli;

namespace GpuExclusive.Tests.Cli;

/// <summary>Runs gpux in-process with captured output and a controlled environment.</summary>
internal static class GpuxRunner
{
    public static GpuxResult Run(IDictionary? environment, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exitCode = GpuxCli.Run(args, stdout, stderr, environment ?? new Hashtable(), interactive: false);
        return new GpuxResult(exitCode, stdout.ToString(), stderr.ToString());
    }

    public static GpuxResult Run(params string[] args) => Run(null, args);
}

internal sealed record GpuxResult(int ExitCode, string Stdout, string Stderr)
{
    public string[] StderrLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
}
