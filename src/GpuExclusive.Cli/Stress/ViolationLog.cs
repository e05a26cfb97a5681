namespace GpuExclusive.Cli.Stress;

/// <summary>Collects invariant violations from every thread; the first one is what the user sees.</summary>
internal sealed class ViolationLog
{
    // Guards _byInvariant.
    private readonly Lock _lock = new();
    private readonly Dictionary<string, long> _byInvariant = [];
    private string? _first;
    private long _count;

    public string? First => Volatile.Read(ref _first);

    public long Count => Interlocked.Read(ref _count);

    /// <summary>Records a violation of <paramref name="invariant"/>; returns true if it was the first of the run.</summary>
    public bool Report(string message, string invariant = Invariants.CpuConsistency)
    {
        Interlocked.Increment(ref _count);
        lock (_lock)
            _byInvariant[invariant] = _byInvariant.GetValueOrDefault(invariant) + 1;
        return Interlocked.CompareExchange(ref _first, message, null) is null;
    }

    /// <summary>Violations of <paramref name="invariant"/> so far.</summary>
    public long CountOf(string invariant)
    {
        lock (_lock)
            return _byInvariant.GetValueOrDefault(invariant);
    }
}

/// <summary>The invariants a stress run checks, by the names the summary and the JSON report use.</summary>
internal static class Invariants
{
    /// <summary>Every counter equals the sum of its successful CPU and device adds (checked at the end).</summary>
    public const string CounterTotals = "counter-totals";

    /// <summary>The old values of each device's dedicated counter form a permutation: every op applied exactly once.</summary>
    public const string ExactlyOnce = "exactly-once";

    /// <summary>InvariantChecker: frame accounting (#2), exclusive entries only where allowed (#1), no Atomic device PTE over a present CPU PTE (#3).</summary>
    public const string FrameAccounting = "frame-accounting";

    /// <summary>A forked child never shows a device-exclusive entry.</summary>
    public const string ForkChildren = "fork-children";

    /// <summary>After disposal every frame is back in the pool (#5).</summary>
    public const string FramesReturned = "frames-returned";

    /// <summary>What each thread reads agrees with what it and the others wrote (monotonic counters, slots, COW, zeros).</summary>
    public const string CpuConsistency = "cpu-consistency";

    /// <summary>Device batches on mapped, writable pages complete every op; grants, device reads and writes behave.</summary>
    public const string DeviceBehaviour = "device-behaviour";

    /// <summary>No thread stays in one operation longer than --watchdog-seconds, and every device keeps answering (no <see cref="DeviceFailedException"/>).</summary>
    public const string Progress = "progress";

    public static readonly string[] All = [CounterTotals, ExactlyOnce, FrameAccounting, ForkChildren, FramesReturned, CpuConsistency, DeviceBehaviour, Progress];
}
