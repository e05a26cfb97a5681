namespace GpuExclusive.Cli;

/// <summary>Process exit codes of <c>gpux</c>; scripts and CI depend on them, so they never change meaning.</summary>
internal static class ExitCodes
{
    /// <summary>The command ran and every invariant held.</summary>
    public const int Success = 0;

    /// <summary>An invariant was violated, or the engine failed unexpectedly during a run.</summary>
    public const int Violation = 1;

    /// <summary>Bad input: unknown option, bad value, unreadable or malformed configuration, or a command not built yet.</summary>
    public const int BadInput = 2;

    /// <summary>Reserved: the watchdog stopped a run that made no progress.</summary>
    public const int Watchdog = 3;
}
