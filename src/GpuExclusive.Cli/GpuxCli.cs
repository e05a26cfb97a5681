using System.Collections;
using System.CommandLine;
using System.CommandLine.Parsing;
using GpuExclusive.Cli.Commands;

namespace GpuExclusive.Cli;

/// <summary>The <c>gpux</c> command line: parsing, dispatch and the exit-code contract.</summary>
internal static class GpuxCli
{
    /// <summary>
    /// Runs gpux with <paramref name="args"/>. Bad input prints exactly one line on <paramref name="stderr"/> and
    /// returns <see cref="ExitCodes.BadInput"/>; no stack trace ever reaches the user for bad input.
    /// </summary>
    /// <param name="environment">Source of <c>GPUX_</c> variables; null for the process environment.</param>
    /// <param name="interactive">True to draw live Spectre.Console displays instead of plain progress lines.</param>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, IDictionary? environment = null, bool interactive = false)
    {
        var context = new CliContext(stdout, stderr, environment, interactive);
        RootCommand root = BuildRoot(context);
        ParseResult parse = root.Parse(args);
        if (OptionRules.ValueMisuse(root, args, parse.UnmatchedTokens) is { } misuse)
            return BadInput(stderr, misuse);
        if (parse.Errors.Count > 0)
        {
            // "gpux bogus" reports both a missing command and the stray token; the stray token is the real mistake.
            ParseError first = parse.Errors.FirstOrDefault(
                e => parse.UnmatchedTokens.Any(token => e.Message.Contains($"'{token}'", StringComparison.Ordinal))) ?? parse.Errors[0];
            return BadInput(stderr, first.Message);
        }

        var invocation = new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,
            // Our actions report their own failures; the default handler would print a stack trace.
            EnableDefaultExceptionHandler = false,
        };

        try
        {
            return parse.Invoke(invocation);
        }
        catch (ConfigurationException e)
        {
            return BadInput(stderr, e.Message);
        }
        catch (UsageException e)
        {
            return BadInput(stderr, e.Message);
        }
    }

    internal static RootCommand BuildRoot(CliContext context)
    {
        var root = new RootCommand(
            "gpux: inspect and stress the GpuExclusive engine (device-exclusive pages over pinned host memory).\n" +
            "Exit codes: 0 success, 1 invariant violation, 2 bad input, 3 watchdog.");
        root.Subcommands.Add(InfoCommand.Create(context));
        root.Subcommands.Add(StressCommand.Create(context));
        root.Subcommands.Add(ScenarioCommand.Create(context));
        root.Subcommands.Add(BenchCommand.Create(context));
        return root;
    }

    private static int BadInput(TextWriter stderr, string message)
    {
        // One line, whatever the message contains: scripts read stderr line by line.
        string oneLine = string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        stderr.WriteLine($"gpux: {oneLine}");
        return ExitCodes.BadInput;
    }
}
