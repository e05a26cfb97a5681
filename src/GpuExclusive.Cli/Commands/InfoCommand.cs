using System.CommandLine;
using System.Globalization;
using ILGPU;
using Spectre.Console;

namespace GpuExclusive.Cli.Commands;

/// <summary><c>gpux info</c>: what ILGPU sees, what <c>Auto</c> would pick and why, and every setting with its source.</summary>
internal static class InfoCommand
{
    public static Command Create(CliContext context)
    {
        var options = new CommonOptions();
        var command = new Command("info", "Show the accelerators ILGPU sees, which one the configured accelerator resolves to and why, the page pool, and every setting with where it came from.");
        options.AddTo(command);
        command.SetAction(parse => Execute(context, options.Load(parse, context)));
        return command;
    }

    private static int Execute(CliContext context, EngineSettings settings)
    {
        IAnsiConsole console = context.Console;

        IReadOnlyList<AcceleratorCandidate> candidates;
        using (Context ilgpu = Context.Create(builder => builder.AllAccelerators()))
            candidates = AcceleratorSelection.Describe(ilgpu);

        var devices = new Table().Title("Accelerators ILGPU sees")
            .AddColumns("#", "Type", "Name", "Memory", "Max threads/group", "Max threads");
        foreach (AcceleratorCandidate device in candidates)
        {
            devices.AddRow(
                device.Index.ToString(CultureInfo.InvariantCulture),
                device.Type.ToString(),
                Markup.Escape(device.Name),
                FormatBytes(device.MemoryBytes),
                device.MaxThreadsPerGroup.ToString(CultureInfo.InvariantCulture),
                device.MaxThreads.ToString(CultureInfo.InvariantCulture));
        }

        console.Write(devices);

        AcceleratorChoice auto = AcceleratorSelection.Choose(AcceleratorKind.Auto, candidates);
        // Plain lines through Stdout: Spectre would wrap them at the console width.
        context.Stdout.WriteLine($"Auto picks: {Describe(auto, candidates)}");
        if (settings.Accelerator != AcceleratorKind.Auto)
        {
            AcceleratorChoice configured = AcceleratorSelection.Choose(settings.Accelerator, candidates);
            context.Stdout.WriteLine($"Configured ({settings.Accelerator}): {Describe(configured, candidates)}");
        }

        long poolBytes = settings.PoolPages * PagePool.PageSize;
        context.Stdout.WriteLine(
            $"Page pool: {settings.PoolPages.ToString(CultureInfo.InvariantCulture)} frames of {PagePool.PageSize} bytes = {FormatBytes(poolBytes)}, " +
            $"locked-memory limit {LockedMemoryLimit()}");

        var values = new Table().Title("Settings").AddColumns("Key", "Value", "Source", "Origin");
        foreach (SettingValue value in settings.Values)
            values.AddRow(Markup.Escape(value.Key), Markup.Escape(value.Value), value.Source.ToString(), Markup.Escape(ShortOrigin(value)));
        console.Write(values);
        return ExitCodes.Success;
    }

    private static string Describe(AcceleratorChoice choice, IReadOnlyList<AcceleratorCandidate> candidates) =>
        choice.Found
            ? $"{choice.Kind} device #{choice.CandidateIndex} '{candidates[choice.CandidateIndex].Name}' ({choice.Reason})"
            : $"none ({choice.Reason})";

    // A file path relative to where the user stands is easier to read than the absolute one (when shorter).
    private static string ShortOrigin(SettingValue value)
    {
        if (value.Source != SettingSource.File)
            return value.Origin;
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, value.Origin);
        return relative.Length < value.Origin.Length ? relative : value.Origin;
    }

    private static string FormatBytes(long bytes) => bytes switch
    {
        // The CPU accelerator reports long.MaxValue: it uses host memory and has no limit of its own.
        >= 1L << 62 => "host memory",
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.##} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.##} MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):0.##} KiB",
        _ => $"{bytes} B",
    };

    /// <summary>RLIMIT_MEMLOCK as Linux reports it; the pool is mlocked only if it fits under this limit.</summary>
    private static string LockedMemoryLimit()
    {
        const string limitsFile = "/proc/self/limits";
        if (!File.Exists(limitsFile))
            return "unknown on this OS";
        string? line = File.ReadLines(limitsFile).FirstOrDefault(l => l.StartsWith("Max locked memory", StringComparison.Ordinal));
        if (line is null)
            return "unknown";
        string[] fields = line["Max locked memory".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return fields.Length == 0 ? "unknown"
            : long.TryParse(fields[0], CultureInfo.InvariantCulture, out long soft) ? FormatBytes(soft)
            : fields[0];
    }
}
