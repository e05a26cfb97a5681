using System.Collections;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace GpuExclusive;

/// <summary>
/// Reads <see cref="EngineSettings"/> from four layers, later ones winning: built-in defaults,
/// <c>runtimesettings.json</c>, <c>GPUX_</c> environment variables, command-line overrides.
/// </summary>
/// <remarks>
/// Environment variables use the Microsoft.Extensions.Configuration scheme: strip the <c>GPUX_</c> prefix and
/// read <c>__</c> as the section separator, so <c>GPUX_ENGINE__POOLPAGES=4096</c> sets <c>Engine:PoolPages</c> and
/// <c>GPUX_LOGGING__LOGLEVEL__DEFAULT=Debug</c> sets <c>Logging:LogLevel:Default</c>. Keys are case-insensitive.
/// Every layer is validated in full (unknown keys, types, ranges) before anything is returned, so a typo in the
/// file is reported even when an environment variable overrides the same key.
/// </remarks>
public static class EngineSettingsLoader
{
    /// <summary>The settings file that ships next to the <c>gpux</c> executable.</summary>
    public const string DefaultFileName = "runtimesettings.json";

    /// <summary>Prefix of the environment variables the loader reads.</summary>
    public const string EnvironmentPrefix = "GPUX_";

    private const string CommandLineOrigin = "command line";
    private const string DefaultOrigin = "default";
    private const string LogLevelSection = "Logging:LogLevel";
    private const string DefaultLogLevelKey = "Logging:LogLevel:Default";

    // Sections that may appear as a parent of known keys (an empty object there is fine).
    private static readonly string[] KnownSections = ["Engine", "Logging", LogLevelSection];

    // The integer keys and their accepted range; the rest (Accelerator, log levels) are parsed by name.
    private static readonly Dictionary<string, (long Min, long Max)> IntegerKeys = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Engine:PoolPages"] = (1, int.MaxValue),
        ["Engine:KernelGroupSize"] = (0, 1024),
        ["Engine:KernelGroups"] = (0, 65536),
        ["Engine:StopPollIntervalMicroseconds"] = (1, 1_000_000),
        ["Engine:ResidentBatchOps"] = (0, 65536),
        ["Engine:ResidentIdleMicroseconds"] = (1, 10_000_000),
        ["Engine:DeviceTimeoutMilliseconds"] = (1, 3_600_000),
        ["Engine:DeviceQuantumMicroseconds"] = (0, 1_000_000),
        ["Engine:DeviceResidentPages"] = (1, 1 << 24),
    };

    /// <summary>The accepted range of an integer key (e.g. <c>Engine:KernelGroups</c>).</summary>
    internal static (long Min, long Max) RangeOf(string key) => IntegerKeys[key];

    private const string AcceleratorKey = "Engine:Accelerator";
    private const string PagePlacementKey = "Engine:PagePlacement";

    /// <summary>
    /// Loads and validates the settings. <paramref name="jsonPath"/> null means no file; a non-null path must
    /// exist and be valid JSON. <paramref name="overrides"/> are configuration keys (<c>Engine:PoolPages</c>) set
    /// by command-line options. <paramref name="environment"/> defaults to the process environment.
    /// </summary>
    /// <exception cref="ConfigurationException">Any bad input; the message names the file or variable and the key.</exception>
    public static EngineSettings Load(
        string? jsonPath,
        IDictionary<string, string?>? overrides = null,
        IDictionary? environment = null)
    {
        var layers = new List<Layer> { DefaultLayer() };
        if (jsonPath is not null)
            layers.Add(FileLayer(jsonPath));
        layers.Add(EnvironmentLayer(environment ?? Environment.GetEnvironmentVariables()));
        if (overrides is not null)
            layers.Add(OverrideLayer(overrides));

        // Validate every layer before merging, so nothing half-valid is ever returned.
        var effective = new SortedDictionary<string, SettingValue>(StringComparer.OrdinalIgnoreCase);
        foreach (var layer in layers)
        {
            foreach (var value in layer.Values)
            {
                ParseValue(value);
                effective[value.Key] = value;
            }
        }

        return Build(effective.Values.ToList());
    }

    /// <summary>The keys the loader accepts besides <c>Logging:LogLevel:&lt;category&gt;</c>.</summary>
    public static IReadOnlyList<string> KnownKeys { get; } =
        [.. IntegerKeys.Keys.Append(AcceleratorKey).Append(PagePlacementKey).Append(DefaultLogLevelKey).Order(StringComparer.Ordinal)];

    private static EngineSettings Build(IReadOnlyList<SettingValue> values)
    {
        long poolPages = EngineSettings.DefaultPoolPages;
        var accelerator = AcceleratorKind.Auto;
        int kernelGroupSize = 0, kernelGroups = 0;
        int stopPoll = EngineSettings.DefaultStopPollIntervalMicroseconds;
        int residentBatchOps = EngineSettings.DefaultResidentBatchOps;
        int residentIdle = EngineSettings.DefaultResidentIdleMicroseconds;
        int deviceTimeout = EngineSettings.DefaultDeviceTimeoutMilliseconds;
        int deviceQuantum = EngineSettings.DefaultDeviceQuantumMicroseconds;
        int deviceResidentPages = EngineSettings.DefaultDeviceResidentPages;
        var placement = PagePlacement.InPlace;
        var defaultLevel = LogLevel.Warning;
        var categories = new Dictionary<string, LogLevel>(StringComparer.OrdinalIgnoreCase);

        foreach (var value in values)
        {
            object parsed = ParseValue(value);
            switch (value.Key)
            {
                case "Engine:PoolPages": poolPages = (long)parsed; break;
                case "Engine:KernelGroupSize": kernelGroupSize = (int)(long)parsed; break;
                case "Engine:KernelGroups": kernelGroups = (int)(long)parsed; break;
                case "Engine:StopPollIntervalMicroseconds": stopPoll = (int)(long)parsed; break;
                case "Engine:ResidentBatchOps": residentBatchOps = (int)(long)parsed; break;
                case "Engine:ResidentIdleMicroseconds": residentIdle = (int)(long)parsed; break;
                case "Engine:DeviceTimeoutMilliseconds": deviceTimeout = (int)(long)parsed; break;
                case "Engine:DeviceQuantumMicroseconds": deviceQuantum = (int)(long)parsed; break;
                case "Engine:DeviceResidentPages": deviceResidentPages = (int)(long)parsed; break;
                case PagePlacementKey: placement = (PagePlacement)parsed; break;
                case AcceleratorKey: accelerator = (AcceleratorKind)parsed; break;
                case DefaultLogLevelKey: defaultLevel = (LogLevel)parsed; break;
                default: categories[value.Key[(LogLevelSection.Length + 1)..]] = (LogLevel)parsed; break;
            }
        }

        return new EngineSettings
        {
            PoolPages = poolPages,
            Accelerator = accelerator,
            KernelGroupSize = kernelGroupSize,
            KernelGroups = kernelGroups,
            StopPollIntervalMicroseconds = stopPoll,
            ResidentBatchOps = residentBatchOps,
            ResidentIdleMicroseconds = residentIdle,
            DeviceTimeoutMilliseconds = deviceTimeout,
            DeviceQuantumMicroseconds = deviceQuantum,
            PagePlacement = placement,
            DeviceResidentPages = deviceResidentPages,
            DefaultLogLevel = defaultLevel,
            CategoryLogLevels = categories,
            Values = values,
        };
    }

    /// <summary>Parses a value of a known key (already canonicalised) or throws naming its origin.</summary>
    private static object ParseValue(SettingValue value)
    {
        string text = value.Value.Trim();
        if (text.Length == 0)
            throw Bad(value, "has no value");

        if (IntegerKeys.TryGetValue(value.Key, out var range))
        {
            if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long number))
            {
                // 99999999999999999999 and 1e30 are numbers, just far too large: say so rather than "not a whole number".
                bool tooFar = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double approximate) &&
                    (approximate < range.Min || approximate > range.Max);
                throw Bad(value, tooFar ? $"{text} is out of range ({range.Min}..{range.Max})" : $"'{value.Value}' is not a whole number");
            }

            if (number < range.Min || number > range.Max)
                throw Bad(value, $"{number} is out of range ({range.Min}..{range.Max})");
            return number;
        }

        if (value.Key == AcceleratorKey)
        {
            if (!TryParseName(text, out AcceleratorKind kind))
                throw Bad(value, $"'{value.Value}' is not one of {string.Join(", ", Enum.GetNames<AcceleratorKind>())}");
            return kind;
        }

        if (value.Key == PagePlacementKey)
        {
            if (!TryParseName(text, out PagePlacement placement))
                throw Bad(value, $"'{value.Value}' is not one of {string.Join(", ", Enum.GetNames<PagePlacement>())}");
            return placement;
        }

        if (!TryParseName(text, out LogLevel level))
            throw Bad(value, $"'{value.Value}' is not a log level ({string.Join(", ", Enum.GetNames<LogLevel>())})");
        return level;
    }

    /// <summary>
    /// Parses one enum name, ignoring case. Enum.TryParse would also take numbers ("1") and comma-separated
    /// combinations ("Cpu,Cuda" is 3, OpenCL); neither means anything in a settings file.
    /// </summary>
    internal static bool TryParseName<TEnum>(string text, out TEnum value)
        where TEnum : struct, Enum
    {
        string? name = Enum.GetNames<TEnum>().FirstOrDefault(n => string.Equals(n, text, StringComparison.OrdinalIgnoreCase));
        value = name is null ? default : Enum.Parse<TEnum>(name);
        return name is not null;
    }

    private static ConfigurationException Bad(SettingValue value, string problem) =>
        new(DescribeOrigin(value.Source, value.Origin), value.Key, problem);

    private static string DescribeOrigin(SettingSource source, string origin) => source switch
    {
        SettingSource.Environment => $"environment variable {origin}",
        _ => origin,
    };

    private static Layer DefaultLayer()
    {
        var defaults = new EngineSettings();
        string[][] pairs =
        [
            ["Engine:PoolPages", defaults.PoolPages.ToString(CultureInfo.InvariantCulture)],
            [AcceleratorKey, defaults.Accelerator.ToString()],
            ["Engine:KernelGroupSize", defaults.KernelGroupSize.ToString(CultureInfo.InvariantCulture)],
            ["Engine:KernelGroups", defaults.KernelGroups.ToString(CultureInfo.InvariantCulture)],
            ["Engine:StopPollIntervalMicroseconds", defaults.StopPollIntervalMicroseconds.ToString(CultureInfo.InvariantCulture)],
            ["Engine:ResidentBatchOps", defaults.ResidentBatchOps.ToString(CultureInfo.InvariantCulture)],
            ["Engine:ResidentIdleMicroseconds", defaults.ResidentIdleMicroseconds.ToString(CultureInfo.InvariantCulture)],
            ["Engine:DeviceTimeoutMilliseconds", defaults.DeviceTimeoutMilliseconds.ToString(CultureInfo.InvariantCulture)],
            ["Engine:DeviceQuantumMicroseconds", defaults.DeviceQuantumMicroseconds.ToString(CultureInfo.InvariantCulture)],
            [PagePlacementKey, defaults.PagePlacement.ToString()],
            ["Engine:DeviceResidentPages", defaults.DeviceResidentPages.ToString(CultureInfo.InvariantCulture)],
            [DefaultLogLevelKey, defaults.DefaultLogLevel.ToString()],
        ];
        return new Layer([.. pairs.Select(p => new SettingValue(p[0], p[1], SettingSource.Default, DefaultOrigin))]);
    }

    private static Layer FileLayer(string jsonPath)
    {
        string fullPath;
        try
        {
            fullPath = Path.GetFullPath(jsonPath);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new ConfigurationException($"'{jsonPath.Replace("\0", "\\0", StringComparison.Ordinal)}'", null, "not a valid file path", e);
        }

        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(fullPath);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ConfigurationException(fullPath, null, "file not found", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new ConfigurationException(fullPath, null, $"cannot read the file: {e.Message}", e);
        }

        IConfigurationRoot root;
        try
        {
            root = new ConfigurationBuilder().AddJsonStream(new MemoryStream(bytes)).Build();
        }
        catch (Exception e) when (e is FormatException or System.Text.Json.JsonException or InvalidOperationException)
        {
            // The JSON parser's own message carries the line and byte position.
            string detail = e.InnerException?.Message ?? e.Message;
            throw new ConfigurationException(fullPath, null, $"malformed JSON: {detail}", e);
        }

        return FromConfiguration(root, SettingSource.File, _ => fullPath);
    }

    private static Layer EnvironmentLayer(IDictionary environment)
    {
        // Our own mapping (instead of AddEnvironmentVariables) so that tests can pass an environment and so that
        // each key remembers the variable it came from.
        var data = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        var variableOfKey = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (DictionaryEntry entry in environment)
        {
            if (entry.Key is not string name || !name.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase))
                continue;
            string key = name[EnvironmentPrefix.Length..].Replace("__", ConfigurationPath.KeyDelimiter, StringComparison.Ordinal);
            if (key.Length == 0)
                throw new ConfigurationException($"environment variable {name}", null, "names no configuration key");
            data[key] = entry.Value as string ?? string.Empty;
            variableOfKey[key] = name;
        }

        var root = new ConfigurationBuilder().AddInMemoryCollection(data).Build();
        return FromConfiguration(
            root,
            SettingSource.Environment,
            key => variableOfKey.TryGetValue(key, out string? name) ? name : EnvironmentPrefix + key.Replace(":", "__", StringComparison.Ordinal));
    }

    private static Layer OverrideLayer(IDictionary<string, string?> overrides)
    {
        var root = new ConfigurationBuilder().AddInMemoryCollection(overrides).Build();
        return FromConfiguration(root, SettingSource.CommandLine, _ => CommandLineOrigin);
    }

    /// <summary>Turns one layer's configuration into canonical known keys, rejecting anything unknown.</summary>
    private static Layer FromConfiguration(
        IConfiguration configuration, SettingSource source, Func<string, string> originOfKey)
    {
        var values = new List<SettingValue>();
        foreach (var (key, value) in configuration.AsEnumerable().OrderBy(p => p.Key, StringComparer.OrdinalIgnoreCase))
        {
            string origin = originOfKey(key);
            string? section = KnownSections.FirstOrDefault(s => string.Equals(s, key, StringComparison.OrdinalIgnoreCase));
            if (section is not null)
            {
                // A section written as a scalar ("Engine": 5) rather than an object.
                if (!string.IsNullOrEmpty(value))
                    throw new ConfigurationException(DescribeOrigin(source, origin), section, $"must be a section (an object), found '{value}'");
                continue;
            }

            // Before Canonicalize: "LogLevel": ["Debug"] would otherwise set a category named "0".
            if (ArraySection(key) is { } array)
                throw new ConfigurationException(DescribeOrigin(source, origin), array, "must be a section (an object), found an array");
            string? canonical = Canonicalize(key);
            if (canonical is null)
            {
                string known = string.Join(", ", KnownKeys);
                throw new ConfigurationException(
                    DescribeOrigin(source, origin), key, $"unknown key (known: {known}, Logging:LogLevel:<category>)");
            }

            if (value is null)
            {
                // null, {} and [] have no value; an object or array with members is a value of the wrong shape.
                bool nested = configuration.GetSection(key).GetChildren().Any();
                throw new ConfigurationException(DescribeOrigin(source, origin), canonical, nested ? "must be a single value, found an object or an array" : "has no value");
            }

            values.Add(new SettingValue(canonical, value, source, origin));
        }

        return new Layer(values);
    }

    /// <summary>The known section <paramref name="key"/> is an element of, when that section was written as an array (<c>Engine:0</c>).</summary>
    private static string? ArraySection(string key)
    {
        int last = key.LastIndexOf(':');
        return last > 0 && key.Length > last + 1 && key[(last + 1)..].All(char.IsAsciiDigit)
            ? KnownSections.FirstOrDefault(s => string.Equals(s, key[..last], StringComparison.OrdinalIgnoreCase))
            : null;
    }

    private static string? Canonicalize(string key)
    {
        foreach (string known in KnownKeys)
        {
            if (string.Equals(known, key, StringComparison.OrdinalIgnoreCase))
                return known;
        }

        // Logging:LogLevel:<category>: the category keeps its spelling (logging filters ignore case anyway).
        string prefix = LogLevelSection + ConfigurationPath.KeyDelimiter;
        if (key.Length > prefix.Length && key.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            return prefix + key[prefix.Length..];
        return null;
    }

    private sealed record Layer(IReadOnlyList<SettingValue> Values);
}
