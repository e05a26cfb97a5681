using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using GpuExclusive.Cli.Scenarios;
using Microsoft.Extensions.Logging;

namespace GpuExclusive.Cli.Commands;

/// <summary><c>gpux scenario</c>: named scripted cases that pass (exit 0) or fail (exit 1, saying what failed).</summary>
internal static class ScenarioCommand
{
    public static Command Create(CliContext context)
    {
        var common = new CommonOptions();
        var name = new Argument<string?>("name")
        {
            Description = "The scenario to run, or 'all' for every one in turn (see --list).",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var list = new Option<bool>("--list") { Description = "List the scenarios with what each checks, and exit." };
        var command = new Command(
            "scenario",
            "Run a named scripted case against the engine and a device: " + string.Join(", ", ScenarioCatalog.All.Select(s => s.Name)) + ".\n" +
            "Exit codes: 0 passed, 1 failed (the failed check is printed), 2 bad input (unknown scenario, unavailable accelerator).");
        command.Arguments.Add(name);
        command.Options.Add(list);
        common.AddTo(command);
        command.SetAction(parse =>
        {
            if (parse.GetValue(list))
                return List(context);
            string requested = parse.GetValue(name) ?? throw new UsageException($"name a scenario or use --list; scenarios: {Names()}");
            IReadOnlyList<Scenario> scenarios = string.Equals(requested, "all", StringComparison.OrdinalIgnoreCase)
                ? ScenarioCatalog.All
                : [ScenarioCatalog.Find(requested) ?? throw new UsageException($"unknown scenario '{requested}'; scenarios: {Names()}")];
            return Execute(context, common.Load(parse, context), scenarios);
        });
        return command;
    }

    private static string Names() => string.Join(", ", ScenarioCatalog.All.Select(s => s.Name)) + ", all";

    private static int List(CliContext context)
    {
        foreach (Scenario scenario in ScenarioCatalog.All)
            context.Stdout.WriteLine($"{scenario.Name,-22} {scenario.Description}");
        return ExitCodes.Success;
    }

    private static int Execute(CliContext context, EngineSettings settings, IReadOnlyList<Scenario> scenarios)
    {
        using ILoggerFactory loggerFactory = CliLogging.CreateFactory(settings);
        using var scenarioContext = new ScenarioContext(settings.Accelerator, loggerFactory);
        int failed = 0;
        foreach (Scenario scenario in scenarios)
        {
            scenarioContext.Notes.Clear();
            long started = Stopwatch.GetTimestamp();
            string? failure = null;
            try
            {
                scenario.Run(scenarioContext);
            }
            catch (ScenarioFailedException e)
            {
                failure = e.Message;
            }
            catch (Exception e) when (e is not UsageException and not OutOfMemoryException)
            {
                failure = $"unexpected {e.GetType().Name}: {StressCommand.OneLine(e.Message)}";
            }

            string seconds = Stopwatch.GetElapsedTime(started).TotalSeconds.ToString("0.00", CultureInfo.InvariantCulture);
            string notes = scenarioContext.Notes.Count == 0 ? string.Empty : $" ({string.Join("; ", scenarioContext.Notes)})";
            if (failure is null)
            {
                context.Stdout.WriteLine($"PASS {scenario.Name} in {seconds} s{notes}");
            }
            else
            {
                failed++;
                context.Stdout.WriteLine($"FAIL {scenario.Name} after {seconds} s: {failure}");
                context.Stderr.WriteLine($"gpux: scenario {scenario.Name} failed: {StressCommand.OneLine(failure)}");
            }

            context.Stdout.Flush();
        }

        if (scenarios.Count > 1)
            context.Stdout.WriteLine($"{scenarios.Count - failed} of {scenarios.Count} scenarios passed.");
        return failed == 0 ? ExitCodes.Success : ExitCodes.Violation;
    }
}
