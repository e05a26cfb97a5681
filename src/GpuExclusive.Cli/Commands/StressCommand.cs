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
            Description = "Also write a JSON report to this file (created or overwritten): config, seed, counts, rates, latencies, invariant results, first violation.",
            HelpName = "PATH",
        };
        var devices = new Option<int>("--devices")
        {
            Description = $"Devices to open on --accelerator, 0..{StressOptions.MaxDevices}. Each mirrors the space and runs random atomic batches (adds on the shared counters, Add(1) on its own permutation counter) and grants on a thread of its own. Opening one takes about a second.",
            DefaultValueFactory = _ => 1,
            HelpName = "N",
        };
        var inject = new Option<bool>("--inject")
        {
            Description = "Fault injection: random delays inside notifier callbacks before PTEs change, page-lock holders that linger " +
                "(delays during grants and restores), CPU touches that stop kernels at random points, invariant checks at random moments, " +
                "and pool pressure (grant, then Discard under load, in the smallest pool the run needs unless --pool-pages is given).",
        };
        var watchdog = new Option<int>("--watchdog-seconds")
        {
            Description = "If any thread stays in one operation this long, print what every thread is doing and exit 3 (1..3600).",
            DefaultValueFactory = _ => 30,
            HelpName = "N",
        };

        OptionRules.Range(seconds, 1, 86_400);
        OptionRules.Range(ops, 1, long.MaxValue);
        OptionRules.Range(seed, 0, int.MaxValue);
        OptionRules.Range(pages, 1, 1_000_000);
        OptionRules.Range(threads, 1, CounterLayout.MaxWorkers);
        OptionRules.Range(devices, 0, StressOptions.MaxDevices);
        OptionRules.Range(watchdog, 1, 3600);
        OptionRules.NonEmptyPath(json);

        var command = new Command(
            "stress",
            "Run a randomised concurrent workload: CPU worker threads AtomicAdd/Read/Write shared counters, device threads run atomic " +
            "batches and grants on the same counters, a churn thread forks (the child works and is checked), protects, clears soft-dirty, " +
            "locks, discards and remaps. Checked live: the invariant checker every 250 ms (frame accounting, no Atomic device PTE over a " +
            "present CPU PTE), exactly-once on each device's permutation counter, children never device-exclusive, a watchdog. Checked at " +
            "the end: every counter equals the sum of its CPU and device adds, every frame is back in the pool.\n" +
            "The same --seed gives every thread the same sequence of operations; how the threads interleave still depends on timing, so a " +
            "seed replays the schedule, not the exact run.\n" +
            "Exit codes: 0 every invariant held, 1 a violation (the seed and the first violation are printed), 2 bad input, 3 watchdog.");
        foreach (Option option in (Option[])[seconds, ops, seed, pages, threads, devices, inject, watchdog, json])
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
                parse.GetValue(json))
            {
                Devices = parse.GetValue(devices),
                Accelerator = settings.Accelerator,
                Inject = parse.GetValue(inject),
                WatchdogSeconds = parse.GetValue(watchdog),
            };
            if (ConfigureForTests is { } configure)
                options = configure(options);
            return Execute(context, settings, options);
        });
        return command;
    }

    /// <summary>Test hook, not reachable from the command line: adjusts the options of the next runs (test hooks such as <see cref="StressOptions.FreezeWorker"/>).</summary>
    internal static Func<StressOptions, StressOptions>? ConfigureForTests { get; set; }

    private static int Execute(CliContext context, EngineSettings settings, StressOptions options)
    {
        // Everything that can be wrong with the input is checked before the engine allocates anything.
        bool poolFromCommandLine = settings.Values.Any(v => v.Key == "Engine:PoolPages" && v.Source == SettingSource.CommandLine);
        long poolPages = options.Inject && !poolFromCommandLine ? Math.Min(settings.PoolPages, options.RequiredPoolPages) : settings.PoolPages;
        if (poolPages < options.RequiredPoolPages)
        {
            throw new UsageException(
                $"a pool of {settings.PoolPages} pages is too small for --pages {options.CounterPages} (needs at least {options.RequiredPoolPages}); " +
                "raise --pool-pages, GPUX_ENGINE__POOLPAGES or Engine:PoolPages");
        }

        using StressReportFile? report = options.JsonPath is null ? null : StressReportFile.Create(options.JsonPath);
        using ILoggerFactory loggerFactory = CliLogging.CreateFactory(settings);
        var devices = new List<ExclusiveDevice>();
        try
        {
            for (int d = 0; d < options.Devices; d++)
                devices.Add(OpenDevice(options.Accelerator, loggerFactory, settings));

            context.Stdout.WriteLine(
                $"gpux stress: seed {options.Seed}, {options.CpuThreads} worker threads + 1 churn thread, " +
                $"{options.Devices} device(s){(devices.Count > 0 ? $" ({devices[0].Kind}: {devices[0].Name}, pages {devices[0].DefaultPlacement})" : string.Empty)}, " +
                $"{options.CounterPages} counter pages, {StressOptions.ScratchPages} scratch pages, pool {poolPages} frames, {options.Seconds} s" +
                (options.MaxOperations is { } max ? $" or {max} operations" : string.Empty) +
                (options.Inject ? ", fault injection on" : string.Empty) + $", watchdog {options.WatchdogSeconds} s");
            context.Stdout.Flush();

            StressWorkload workload;
            try
            {
                workload = new StressWorkload(options, poolPages, loggerFactory, devices);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                context.Stderr.WriteLine($"gpux: the engine failed to start (seed {options.Seed}): {e.GetType().Name}: {OneLine(e.Message)}");
                return ExitCodes.Violation;
            }

            return Run(context, settings, options, poolPages, workload, report);
        }
        finally
        {
            foreach (ExclusiveDevice device in devices)
                device.Dispose();
        }
    }

    /// <summary>Opens a device; a kind that is not here is bad input, reported with the library's own reason.</summary>
    internal static ExclusiveDevice OpenDevice(AcceleratorKind kind, ILoggerFactory loggerFactory, EngineSettings? settings = null)
    {
        try
        {
            // The settings carry every engine value; the accelerator is the one asked for.
            settings ??= new EngineSettings();
            return ExclusiveDevice.Open(new EngineSettings
            {
                Accelerator = kind,
                KernelGroupSize = settings.KernelGroupSize,
                KernelGroups = settings.KernelGroups,
                StopPollIntervalMicroseconds = settings.StopPollIntervalMicroseconds,
                ResidentBatchOps = settings.ResidentBatchOps,
                ResidentIdleMicroseconds = settings.ResidentIdleMicroseconds,
                DeviceTimeoutMilliseconds = settings.DeviceTimeoutMilliseconds,
                DeviceQuantumMicroseconds = settings.DeviceQuantumMicroseconds,
                PagePlacement = settings.PagePlacement,
                DeviceResidentPages = settings.DeviceResidentPages,
            }, loggerFactory);
        }
        catch (NotSupportedException e)
        {
            throw new UsageException(e.Message);
        }
    }

    private static int Run(CliContext context, EngineSettings settings, StressOptions options, long poolPages, StressWorkload workload, StressReportFile? report)
    {
        StressStats totals;
        DeviceTotals deviceTotals;
        using (workload)
        {
            workload.Start();
            if (context.Interactive)
            {
                context.Console.Live(LiveTable(workload, options)).AutoClear(true).Start(live =>
                    Drive(workload, options, LiveProgressInterval, () => live.UpdateTarget(LiveTable(workload, options))));
            }
            else
            {
                Drive(workload, options, PlainProgressInterval, () => { context.Stdout.WriteLine(ProgressLine(workload)); context.Stdout.Flush(); });
            }

            totals = workload.Finish();
            deviceTotals = workload.DeviceSnapshot();
        }

        string? violation = workload.Violations.First;
        int exitCode = workload.WatchdogDump is not null ? ExitCodes.Watchdog : violation is null ? ExitCodes.Success : ExitCodes.Violation;
        WriteSummary(context, options, workload, totals, deviceTotals);
        report?.Write(options, settings, poolPages, workload, totals, deviceTotals, exitCode);

        if (workload.WatchdogDump is { } dump)
        {
            context.Stdout.WriteLine($"WATCHDOG: a thread made no progress for {options.WatchdogSeconds} s (seed {options.Seed}).");
            foreach (string line in dump)
                context.Stderr.WriteLine($"gpux: {line}");
        }
        else if (violation is null)
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

    /// <summary>Runs until the time or operation budget is spent, a violation or the watchdog stops the threads, or the user interrupts.</summary>
    private static void Drive(StressWorkload workload, StressOptions options, TimeSpan interval, Action show)
    {
        var deadline = TimeSpan.FromSeconds(options.Seconds);
        using var interrupted = new ConsoleInterrupt();
        while (true)
        {
            TimeSpan left = deadline - workload.Elapsed;
            if (left <= TimeSpan.Zero || interrupted.Requested)
                workload.RequestStop();
            // A wait under a millisecond is a zero wait to Thread.Join: round the last slice up, or the loop would spin
            // through its final millisecond printing the same progress line again and again.
            var wait = left > TimeSpan.Zero && left < interval ? TimeSpan.FromMilliseconds(Math.Max(1, Math.Ceiling(left.TotalMilliseconds))) : interval;
            if (workload.WatchdogDump is not null || workload.WaitForThreads(wait))
                return;
            show();
        }
    }

    private static string ProgressLine(StressWorkload workload)
    {
        StressStats stats = workload.Snapshot();
        DeviceTotals devices = workload.DeviceSnapshot();
        double seconds = Math.Max(workload.Elapsed.TotalSeconds, 1e-9);
        return string.Create(CultureInfo.InvariantCulture,
            $"[{seconds,6:0.0}s] cpu ops {stats.WorkerOperations:N0} ({stats.WorkerOperations / seconds:N0}/s), device ops {devices.Ops:N0} ({devices.Ops / seconds:N0}/s), " +
            $"grants {devices.Grants:N0}, revocations {devices.Revocations:N0}, device faults {devices.DeviceFaults:N0}, replays {devices.Replays:N0}, " +
            $"forks {stats.Forks:N0}, checks {workload.InvariantChecks:N0}, violations {workload.Violations.Count}");
    }

    private static Table LiveTable(StressWorkload workload, StressOptions options)
    {
        StressStats stats = workload.Snapshot();
        DeviceTotals devices = workload.DeviceSnapshot();
        double seconds = Math.Max(workload.Elapsed.TotalSeconds, 1e-9);
        double remaining = Math.Max(0, options.Seconds - seconds);
        long violations = workload.Violations.Count;
        var table = new Table().Title($"gpux stress, seed {options.Seed}").AddColumns("", "total", "per second");
        table.Columns[1].RightAligned();
        table.Columns[2].RightAligned();
        void Row(string name, long count) =>
            table.AddRow(name, count.ToString("N0", CultureInfo.InvariantCulture), (count / seconds).ToString("N0", CultureInfo.InvariantCulture));
        Row("CPU ops", stats.WorkerOperations);
        Row("device ops", devices.Ops);
        Row("device batches", devices.Batches);
        Row("grants", devices.Grants);
        Row("revocations", devices.Revocations);
        Row("device faults", devices.DeviceFaults);
        Row("replays", devices.Replays);
        Row("forks", stats.Forks);
        Row("invariant checks", workload.InvariantChecks);
        table.AddRow("elapsed / remaining", string.Create(CultureInfo.InvariantCulture, $"{seconds:0.0} s"), string.Create(CultureInfo.InvariantCulture, $"{remaining:0.0} s left"));
        table.AddRow(violations == 0 ? "[green]violations[/]" : "[red]violations[/]", violations.ToString(CultureInfo.InvariantCulture), string.Empty);
        return table;
    }

    private static void WriteSummary(CliContext context, StressOptions options, StressWorkload workload, StressStats totals, DeviceTotals devices)
    {
        var table = new Table().Title($"gpux stress, seed {options.Seed}").AddColumns("What", "Count");
        table.Columns[1].RightAligned();
        foreach (var (name, count) in totals.Rows())
            table.AddRow(name, count.ToString("N0", CultureInfo.InvariantCulture));
        foreach (var (name, count) in StressReportFile.DeviceRows(devices))
            table.AddRow(name, count.ToString("N0", CultureInfo.InvariantCulture));
        if (devices.Devices > 0)
        {
            table.AddRow("batch latency p50 / p99", Latency(devices.BatchLatency));
            table.AddRow("CPU revocation latency p50 / p99", Latency(devices.RevocationLatency));
        }

        table.AddRow("invariant checks", workload.InvariantChecks.ToString("N0", CultureInfo.InvariantCulture));
        table.AddRow("elapsed", workload.Elapsed.TotalSeconds.ToString("0.00 s", CultureInfo.InvariantCulture));
        table.AddRow("free frames after dispose", workload.FreePagesAfterDispose < 0 ? "not disposed" : $"{workload.FreePagesAfterDispose} of {workload.PoolCapacity}");
        table.AddRow("violations", workload.Violations.Count.ToString(CultureInfo.InvariantCulture));
        context.Console.Write(table);

        static string Latency(LatencySummary latency) => latency.Count == 0
            ? "no samples"
            : string.Create(CultureInfo.InvariantCulture, $"{latency.P50:0.0} / {latency.P99:0.0} µs");
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
