using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.Logging;

namespace GpuExclusive.Cli;

/// <summary>The configuration options every engine command takes, and how they become configuration overrides.</summary>
internal sealed class CommonOptions
{
    public Option<string?> Config { get; } = new("--config")
    {
        Description = $"Settings file to read instead of the {EngineSettingsLoader.DefaultFileName} next to gpux; it must exist.",
        HelpName = "PATH",
    };

    public Option<string?> LogLevel { get; } = new("--log-level")
    {
        Description = "Minimum log level for categories without their own entry: Trace, Debug, Information, Warning, Error, Critical or None (overrides Logging:LogLevel:Default).",
        HelpName = "LEVEL",
    };

    public Option<string?> Accelerator { get; } = new("--accelerator")
    {
        Description = "Accelerator to use: auto, cpu, cuda or opencl (overrides Engine:Accelerator).",
        HelpName = "KIND",
    };

    public Option<long?> PoolPages { get; } = new("--pool-pages")
    {
        Description = "Frames of 4096 bytes in the page pool, 1..2147483647 (overrides Engine:PoolPages).",
        HelpName = "N",
    };

    public Option<string?> Placement { get; } = new("--placement")
    {
        Description = "Where a device works on the pages it holds: InPlace (in host memory, zero-copy) or DeviceResident (copied into device memory while held) (overrides Engine:PagePlacement).",
        HelpName = "PLACEMENT",
    };

    public CommonOptions()
    {
        LogLevel.Validators.Add(result =>
        {
            string? text = result.GetValueOrDefault<string?>();
            if (text is not null && !IsName<LogLevel>(text))
                result.AddError($"--log-level must be one of {string.Join(", ", Enum.GetNames<LogLevel>())} (got '{text}')");
        });
        Accelerator.Validators.Add(result =>
        {
            string? text = result.GetValueOrDefault<string?>();
            if (text is not null && !IsName<AcceleratorKind>(text))
                result.AddError($"--accelerator must be one of auto, cpu, cuda, opencl (got '{text}')");
        });
        Placement.Validators.Add(result =>
        {
            string? text = result.GetValueOrDefault<string?>();
            if (text is not null && !IsName<PagePlacement>(text))
                result.AddError($"--placement must be one of {string.Join(", ", Enum.GetNames<PagePlacement>())} (got '{text}')");
        });
        OptionRules.Range(PoolPages, 1, int.MaxValue);
        OptionRules.NonEmptyPath(Config);
    }

    public void AddTo(Command command)
    {
        command.Options.Add(Config);
        command.Options.Add(LogLevel);
        command.Options.Add(Accelerator);
        command.Options.Add(PoolPages);
        command.Options.Add(Placement);
    }

    /// <summary>
    /// Reads the settings: <c>--config</c> if given (it must exist), else the file shipped next to gpux if present,
    /// then <c>GPUX_</c> environment variables, then these options.
    /// </summary>
    public EngineSettings Load(ParseResult parse, CliContext context)
    {
        string? path = parse.GetValue(Config);
        if (path is null)
        {
            string shipped = Path.Combine(AppContext.BaseDirectory, EngineSettingsLoader.DefaultFileName);
            if (File.Exists(shipped))
                path = shipped;
        }

        var overrides = new Dictionary<string, string?>();
        if (parse.GetValue(LogLevel) is { } level)
            overrides["Logging:LogLevel:Default"] = level;
        if (parse.GetValue(Accelerator) is { } accelerator)
            overrides["Engine:Accelerator"] = accelerator;
        if (parse.GetValue(PoolPages) is { } pages)
            overrides["Engine:PoolPages"] = pages.ToString(CultureInfo.InvariantCulture);
        if (parse.GetValue(Placement) is { } placement)
            overrides["Engine:PagePlacement"] = placement.Trim();

        try
        {
            return EngineSettingsLoader.Load(path, overrides, context.Environment);
        }
        catch (ConfigurationException e) when (parse.GetValue(Config) is not null && e.Origin != "command line" && !e.Origin.StartsWith("environment variable", StringComparison.Ordinal))
        {
            // With --config the only file read is the one it names: say which option brought it in.
            throw new UsageException($"{Config.Name} {e.Message}");
        }
    }

    // One name, ignoring case: not a number ("3") nor a combination ("cpu,cuda", which Enum.TryParse reads as OpenCL).
    private static bool IsName<TEnum>(string text) where TEnum : struct, Enum =>
        EngineSettingsLoader.TryParseName<TEnum>(text.Trim(), out _);
}
