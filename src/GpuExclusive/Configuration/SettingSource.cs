namespace GpuExclusive;

/// <summary>Where a configuration value came from, lowest precedence first.</summary>
public enum SettingSource
{
    /// <summary>The engine's built-in default.</summary>
    Default,
    /// <summary>The <c>runtimesettings.json</c> file (or the file given with <c>--config</c>).</summary>
    File,
    /// <summary>A <c>GPUX_</c> environment variable.</summary>
    Environment,
    /// <summary>A command-line option.</summary>
    CommandLine,
}

/// <summary>One effective configuration value and where it came from (what <c>gpux info</c> prints).</summary>
/// <param name="Key">The configuration key, for example <c>Engine:PoolPages</c>.</param>
/// <param name="Value">The value as written in its source.</param>
/// <param name="Source">Which layer supplied it.</param>
/// <param name="Origin">The file path, the environment variable name, "command line" or "default".</param>
public sealed record SettingValue(string Key, string Value, SettingSource Source, string Origin);
