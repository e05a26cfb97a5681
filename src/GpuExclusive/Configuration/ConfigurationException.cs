namespace GpuExclusive;

/// <summary>
/// Bad engine configuration: a malformed or unreadable settings file, an unknown key, a value of the wrong
/// type or out of range. The message names where the value came from and the key.
/// </summary>
public sealed class ConfigurationException : Exception
{
    /// <summary>Creates the exception; <paramref name="origin"/> is the file, variable or "command line".</summary>
    public ConfigurationException(string origin, string? key, string problem, Exception? innerException = null)
        : base(key is null ? $"{origin}: {problem}" : $"{origin}: {key}: {problem}", innerException)
    {
        Origin = origin;
        Key = key;
    }

    /// <summary>Where the bad input came from: a file path, an environment variable name, or "command line".</summary>
    public string Origin { get; }

    /// <summary>The configuration key at fault (for example <c>Engine:PoolPages</c>), or null for a whole-file problem.</summary>
    public string? Key { get; }
}
