namespace GpuExclusive.Cli;

/// <summary>Bad input found after parsing (a combination of options that cannot work); reported as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
