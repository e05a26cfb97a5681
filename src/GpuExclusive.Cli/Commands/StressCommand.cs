using System.CommandLine;
using System.Globalization;
using GpuExclusive.Cli.Stress;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace GpuExclusive.Cli.Commands;

/// <summary><c>gpux stress</c>: the host-only concurrent workload with invariant checks.</summary>
internal static class StressCommand
{
    private static readonly TimeSpan PlainProgressInterval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan LiveProgressInterval = TimeSpan.FromMilliseconds(200);

    public static Command Create(CliContext context)
    {
        var common = new CommonOptions();
        var seconds = new Option<int>("--seconds")
        {
            Description = "Stop after this many seconds (1..86400).",
            DefaultValueFactory = _ => 10,
            HelpName = "N",
        };
        var ops = new Option<long?>("--ops")
        {
            Description = "Stop after this many worker operations, if that comes before --seconds.",
            HelpName = "N",
        };
        var seed = new Option<int?>("--seed")
        {
            Description = "Seed for every thread's operation schedule, 0..2147483647 (default: random, printed at start). The same seed gives each thread the same sequence of operations.",
            HelpName = "S",
        };
        var pages = new Option<int>("--pages")
        {
            Description = "Pages of shared counters the worker threads hammer (1..1000000); the pool must hold about three times as many.",
            DefaultValueFactory = _ => 64,
            HelpName = "N",
        };
        var threads = new Option<int>("--cpu-threads")
        {
            Description = $"Worker threads doing CPU accesses, 1..{CounterLayout.MaxWorkers} (default: processor count); one churn thread runs besides.",
            DefaultValueFactory = _ => Math.Clamp(Environment.ProcessorCount, 1, CounterLayout.MaxWorkers),
            HelpName = "N",
        };
        var json = new Option<string?>("--json")
        {
            Description = "Also write a JSON report to this file (created or overwritten).",
            HelpName = "PATH",
        };

        AddRange(seconds, 1, 86_400);
        AddRange(ops, 1, long.MaxValue);
        AddRange(seed, 0, int.MaxValue);
        AddRange(pages, 1, 1_000_000);
        AddRange(threads, 1, CounterLayout.MaxWorkers);

        var command = new Command(
            "stress",
            "Run a randomised host-only workload: worker threads AtomicAdd/Read/Write shared counters while a churn thread forks, " +
            "protects, clears soft-dirty, locks, discards and remaps. Checks that every counter equals the sum of its adds and " +
            "that every frame returns to the pool. Exit 0 if all invariants held, 1 on a violation (the seed is printed), 2 on bad input.");
        foreach (Option option in (Option[])[seconds, ops, seed, pages, threads, json])
            command.Options.Add(option);
        common.AddTo(command);

        command.SetAction(parse =>
        {
            EngineSettings settings = common.Load(parse, context);
            var options = new StressOptions(
                parse.GetValue(seconds),
                parse.GetValue(ops),
                parse.GetValue(seed) ?? Random.Shared.Next(),
                parse.GetValue(pages),
                parse.GetValue(threads),
                parse.GetValue(json));
            return Execute(context, settings, options);
        });
        return command;
    }

    private static void AddRange<T>(Option<T> option, long min, long max)
    {
        option.Validators.Add(result =>
        {
            // A value that did not convert is already a parse error; checking its range would throw.
            if (result.Tokens.Count == 1 && !long.TryParse(result.Tokens[0].Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
                return;
            object? value = result.GetValueOrDefault<T>();
            if (value is null)
                return;
            long number = Convert.ToInt64(value, CultureInfo.InvariantCulture);
            if (number < min || number > max)
            {
                result.AddError(min == 1 && max == long.MaxValue
                    ? $"{option.Name} must be > 0 (got {number})"
                    : $"{option.Name} must be between {min} and {max} (got {number})");
            }
        });
    }

    private static int Execute(CliContext context, EngineSettings settings, StressOptions options)
    {
        // Everything that can be wrong with the input is checked before the engine allocates anything.
        if (settings.PoolPages < options.RequiredPoolPages)
        {
            throw new UsageException(
                $"a pool of {settings.PoolPages} pages is too small for --pages {options.CounterPages} (needs at least {options.RequiredPoolPages}); " +
                "raise --pool-pages, GPUX_ENGINE__POOLPAGES or Engine:PoolPages");
        }

        using StressReportFile? report = options.JsonPath is null ? null : StressReportFile.Create(options.JsonPath);

        context.Stdout.WriteLine(
            $"gpux stress: seed {options.Seed}, {options.CpuThreads} worker threads + 1 churn thread, {options.CounterPages} counter pages, " +
            $"{StressOptions.ScratchPages} scratch pages, pool {settings.PoolPages} frames, {options.Seconds} s" +
            (options.MaxOperations is { } max ? $" or {max} operations" : string.Empty));
        context.Stdout.Flush();

        using ILoggerFactory loggerFactory = CliLogging.CreateFactory(settings);
        StressWorkload workload;
        try
        {
            workload = new StressWorkload(options, settings.PoolPages, loggerFactory);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            context.Stderr.WriteLine($"gpux: the engine failed to start (seed {options.Seed}): {e.GetType().Name}: {OneLine(e.Message)}");
            return ExitCodes.Violation;
        }

        StressStats totals;
        using (workload)
        {
            workload.Start();
            if (context.Interactive)
                context.Console.Status().Start("stress", status => Drive(workload, options, LiveProgressInterval, line => status.Status = Markup.Escape(line)));
            else
                Drive(workload, options, PlainProgressInterval, line => { context.Stdout.WriteLine(line); context.Stdout.Flush(); });
            totals = workload.Finish();
        }

        string? violation = workload.Violations.First;
        int exitCode = violation is null ? ExitCodes.Success : ExitCodes.Violation;
        WriteSummary(context, options, workload, totals);
        report?.Write(options, settings, workload, totals, exitCode);

        if (violation is null)
        {
            context.Stdout.WriteLine($"PASS: every invariant held (seed {options.Seed}).");
        }
        else
        {
            context.Stdout.WriteLine($"FAIL: {workload.Violations.Count} violation(s); rerun with --seed {options.Seed} to repeat the schedule.");
            context.Stderr.WriteLine($"gpux: invariant violated (seed {options.Seed}): {OneLine(violation)}");
        }

        return exitCode;
    }

    /// <summary>Runs until the time or operation budget is spent, a violation stops the threads, or the user interrupts.</summary>
    private static void Drive(StressWorkload workload, StressOptions options, TimeSpan interval, Action<string> show)
    {
        var deadline = TimeSpan.FromSeconds(options.Seconds);
        using var interrupted = new ConsoleInterrupt();
        while (true)
        {
            TimeSpan left = deadline - workload.Elapsed;
            if (left <= TimeSpan.Zero || interrupted.Requested)
                workload.RequestStop();
            if (workload.WaitForThreads(left > TimeSpan.Zero && left < interval ? left : interval))
                return;
            show(ProgressLine(workload));
        }
    }

    private static string ProgressLine(StressWorkload workload)
    {
        StressStats stats = workload.Snapshot();
        double seconds = Math.Max(workload.Elapsed.TotalSeconds, 1e-9);
        return string.Create(CultureInfo.InvariantCulture,
            $"[{seconds,6:0.0}s] ops {stats.WorkerOperations:N0} ({stats.WorkerOperations / seconds:N0}/s), adds {stats.AtomicAdds:N0}, " +
            $"rejected writes {stats.RejectedWrites:N0}, forks {stats.Forks:N0}, protects {stats.ProtectWindows:N0}, " +
            $"discards {stats.Discards:N0}, remaps {stats.Remaps:N0}, violations {workload.Violations.Count}");
    }

    private static void WriteSummary(CliContext context, StressOptions options, StressWorkload workload, StressStats totals)
    {
        var table = new Table().Title($"gpux stress, seed {options.Seed}").AddColumns("What", "Count");
        table.Columns[1].RightAligned();
        foreach (var (name, count) in totals.Rows())
            table.AddRow(name, count.ToString("N0", CultureInfo.InvariantCulture));
        table.AddRow("elapsed", workload.Elapsed.TotalSeconds.ToString("0.00 s", CultureInfo.InvariantCulture));
        table.AddRow("free frames after dispose", $"{workload.FreePagesAfterDispose} of {workload.PoolCapacity}");
        table.AddRow("violations", workload.Violations.Count.ToString(CultureInfo.InvariantCulture));
        context.Console.Write(table);
    }

    internal static string OneLine(string text) =>
        string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <summary>Turns the first Ctrl+C into a graceful stop (final checks still run); a second one kills the process.</summary>
    private sealed class ConsoleInterrupt : IDisposable
    {
        private volatile bool _requested;

        public ConsoleInterrupt() => Console.CancelKeyPress += OnCancel;

        public bool Requested => _requested;

        public void Dispose() => Console.CancelKeyPress -= OnCancel;

        private void OnCancel(object? sender, ConsoleCancelEventArgs e)
        {
            if (_requested)
                return;
            _requested = true;
            e.Cancel = true;
        }
    }
}
