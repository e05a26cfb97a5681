using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using GpuExclusive.Cli.Bench;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace GpuExclusive.Cli.Commands;

/// <summary>
/// <c>gpux bench</c>: the measurements of bench/GpuExclusive.Bench in a quick mode, each against a baseline measured
/// in the same run, printed as a table of ratios against the DESIGN §7 targets.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CliContext context)
    {
        var common = new CommonOptions();
        var seconds = new Option<double>("--seconds")
        {
            Description = "Time bound of each measurement (each side of each row), 0.001..60 seconds: a quarter warms up, the rest is sampled (at least 3 samples). Default 0.5 (0.5 with --full too).",
            DefaultValueFactory = _ => 0.5,
            HelpName = "S",
        };
        var quick = new Option<bool>("--quick") { Description = "Quick mode (the default): scale sizes 1k..64k pages, ping-pong on 1..64 pages." };
        var full = new Option<bool>("--full") { Description = "Scale sizes up to 1 M pages (4 GiB of pool; minutes, not bounded to 60 s) and ping-pong up to 256 pages." };
        var filter = new Option<string[]>("--filter")
        {
            Description = $"Run only groups or rows whose name contains NAME (repeatable, or comma-separated). Groups: {string.Join(", ", BenchSuite.Groups.Select(g => g.Name))}.",
            HelpName = "NAME",
            AllowMultipleArgumentsPerToken = false,
        };
        var json = new Option<string?>("--json") { Description = "Also write a JSON report here: machine, accelerator, every row with absolute figures, ratio, DESIGN §7 target and verdict.", HelpName = "PATH" };
        var plot = new Option<string?>("--plot") { Description = "Write PNG charts into this folder (created): revocation latency histogram, ping-pong rate vs pages, grant/fork cost vs size.", HelpName = "DIR" };
        seconds.Validators.Add(result =>
        {
            // The token's own text, parsed here: a token that is no number is System.CommandLine's to report.
            if (result.Tokens.Count != 1 || !double.TryParse(result.Tokens[0].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
                return;
            if (!(value >= 0.001 && value <= 60))
                result.AddError($"--seconds must be between 0.001 and 60 (got {value.ToString(CultureInfo.InvariantCulture)})");
        });
        filter.Validators.Add(result =>
        {
            // "--filter ''" or "--filter ," names no group: without this it would run every group (a minute of work).
            foreach (var token in result.Tokens.Where(t => t.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Length == 0))
                result.AddError($"--filter needs a group or row name (got '{token.Value}')");
        });
        OptionRules.NonEmptyPath(json);
        OptionRules.NonEmptyPath(plot);

        var command = new Command(
            "bench",
            "Quick side-by-side figures: every DESIGN §7 measurement of bench/GpuExclusive.Bench against a baseline measured in the same run " +
            "(raw pointer, Buffer.MemoryCopy, Linux mprotect and minor faults, the same ILGPU kernel on raw memory, CPU Interlocked), " +
            "Stopwatch-timed with warmup and repetitions; prints median (p90) figures, the ratio, the target and pass/miss. " +
            "About 30-60 s in all by default. Targets are informational: exit 0 after a run whatever they say, 1 if a measurement failed, 2 bad input.");
        foreach (Option option in (Option[])[seconds, quick, full, filter, json, plot])
            command.Options.Add(option);
        common.AddTo(command);

        command.SetAction(parse =>
        {
            if (parse.GetValue(quick) && parse.GetValue(full))
                throw new UsageException("--quick and --full cannot be combined");
            string[] filters = [.. (parse.GetValue(filter) ?? []).SelectMany(f => f.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))];
            string[] groups = [.. BenchSuite.Groups.Select(g => g.Name).Where(g => filters.Length == 0 || filters.Any(f => Matches(g, f)))];
            if (groups.Length == 0)
                throw new UsageException($"--filter {string.Join(',', filters)} matches nothing; groups are {string.Join(", ", BenchSuite.Groups.Select(g => g.Name))}");
            EngineSettings settings = common.Load(parse, context);
            var options = new BenchOptions(parse.GetValue(seconds), parse.GetValue(full), filters);
            return Execute(context, settings, options, groups, parse.GetValue(json), parse.GetValue(plot));
        });
        return command;
    }

    /// <summary>A filter names a group when the group contains it or it starts with the group ("grant-4096" runs grant).</summary>
    private static bool Matches(string group, string filter) =>
        group.Contains(filter, StringComparison.OrdinalIgnoreCase) || filter.StartsWith(group, StringComparison.OrdinalIgnoreCase) ||
        (group == "scale" && (filter.StartsWith("fork", StringComparison.OrdinalIgnoreCase) || filter.StartsWith("grant-", StringComparison.OrdinalIgnoreCase)));

    private static bool Keep(BenchRow row, string[] filters) =>
        filters.Length == 0 || filters.Any(f => row.Name.Contains(f, StringComparison.OrdinalIgnoreCase) || row.Group.Contains(f, StringComparison.OrdinalIgnoreCase));

    private static int Execute(CliContext context, EngineSettings settings, BenchOptions options, string[] groups, string? jsonPath, string? plotDir)
    {
        // Where the results go is checked before a minute of measurements, not after.
        if (jsonPath is not null)
            OptionRules.CheckWritableFile("--json", jsonPath);
        if (plotDir is not null)
            OptionRules.CreateFolder("--plot", plotDir);

        using ILoggerFactory loggerFactory = CliLogging.CreateFactory(settings);
        var clock = Stopwatch.StartNew();
        var rows = new List<BenchRow>();
        var failures = new List<(string Group, string Error)>();
        IAnsiConsole console = context.Console;
        console.WriteLine($"gpux bench: {groups.Length} group(s), {options.SecondsPerMeasurement.ToString(CultureInfo.InvariantCulture)} s per measurement{(options.Full ? ", full sizes" : ", quick sizes")}");
        using var suite = new BenchSuite(options, () => StressCommand.OpenDevice(settings.Accelerator, loggerFactory, settings),
            what => context.Stdout.WriteLine($"  · {what}"));
        foreach (string group in groups)
        {
            try
            {
                suite.WarmUp(group);
                rows.AddRange(suite.Run(group).Where(r => Keep(r, options.Filters.ToArray())));
            }
            catch (UsageException)
            {
                throw; // the accelerator asked for is not here: bad input, not a failed measurement
            }
            catch (Exception e)
            {
                failures.Add((group, $"{e.GetType().Name}: {e.Message}"));
                context.Stderr.WriteLine($"gpux: bench: {group} failed: {e.GetType().Name}: {e.Message}");
            }
        }

        MachineInfo machine = MachineInfo.Collect(suite.OpenedDevice);
        string subtitle = $"{machine.Cpu}, {machine.Cores} cores; accelerator {machine.AcceleratorKind}";
        var plots = new List<string>();
        if (plotDir is not null)
        {
            try
            {
                plots.AddRange(BenchPlots.Write(plotDir, suite.Plots, subtitle));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                failures.Add(("plot", $"{e.GetType().Name}: {e.Message}"));
                context.Stderr.WriteLine($"gpux: bench: charts could not be drawn ({e.GetType().Name}: {e.Message}); the table and --json are complete");
            }
        }

        clock.Stop();
        if (!context.Interactive)
            console.Profile.Width = 180; // one line per row in logs and redirected output
        PrintTable(console, machine, rows);
        // Below the table, unwrapped: rows with further figures (touch counts, a reader's reads) get a line each.
        foreach (BenchRow row in rows.Where(r => r.Figures.Count > 0))
            context.Stdout.WriteLine($"  {row.Name}: {string.Join(", ", row.Figures.Select(f => $"{f.Name} {f.Format()}"))}");
        foreach (string path in plots)
            console.WriteLine($"chart: {path}");
        if (jsonPath is not null)
        {
            BenchReport.Write(jsonPath, machine, options, rows, failures, plots, clock.Elapsed.TotalSeconds);
            console.WriteLine($"report: {jsonPath}");
        }

        console.WriteLine($"{rows.Count} rows in {clock.Elapsed.TotalSeconds:0.0} s; " +
            $"targets: {rows.Count(r => r.Verdict == "pass")} pass, {rows.Count(r => r.Verdict == "miss")} miss (informational)" +
            (failures.Count > 0 ? $"; {failures.Count} measurement(s) FAILED" : string.Empty));
        return failures.Count > 0 ? ExitCodes.Violation : ExitCodes.Success;
    }

    private static void PrintTable(IAnsiConsole console, MachineInfo machine, List<BenchRow> rows)
    {
        console.WriteLine($"Machine: {machine.Cpu}, {machine.Cores} cores, {machine.Os}, {machine.Runtime}");
        console.WriteLine($"Accelerator: {machine.AcceleratorKind} ({machine.Accelerator}); timer overhead {BenchRow.FormatNs(machine.TimerOverheadNs)} per timed sample");
        var table = new Table().Border(TableBorder.Rounded);
        table.AddColumn("row");
        table.AddColumn(new TableColumn("engine median (p90)").RightAligned());
        table.AddColumn(new TableColumn("baseline median (p90)").RightAligned());
        table.AddColumn(new TableColumn("ratio").RightAligned());
        table.AddColumn("target");
        table.AddColumn("verdict");
        foreach (BenchRow row in rows)
        {
            string engine = $"{row.Format(row.Engine.Median)} ({row.Format(row.Engine.P90)})";
            string baseline = row.Baseline is { } b ? $"{row.BaselineLabel}: {row.Format(b.Median)} ({row.Format(b.P90)})" : "-";
            string ratio = row.Ratio is { } r ? $"{r.ToString(r < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture)}{(row.RatioKind == RatioKind.Time ? "×" : " speed")}" : "-";
            string verdict = row.Verdict switch
            {
                "pass" => "[green]pass[/]",
                "miss" => "[red]miss[/]",
                _ => "info",
            };
            table.AddRow(
                Markup.Escape($"{row.Name} ({row.Unit})"),
                Markup.Escape(engine),
                Markup.Escape(baseline),
                Markup.Escape(ratio),
                Markup.Escape(row.Target?.Text ?? "-"),
                verdict);
        }

        console.Write(table);
    }
}
