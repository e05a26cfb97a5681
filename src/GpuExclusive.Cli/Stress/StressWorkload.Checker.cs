namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The checker thread: the engine's full invariant checker (frame accounting, the reverse map, device-exclusive entries)
/// every <see cref="CheckerPeriod"/> while the run lasts; the toucher and the final checks run it too.
/// </summary>
internal sealed partial class StressWorkload
{
    /// <summary>How often the checker thread runs the full invariant checker (it takes every mmap lock).</summary>
    private static readonly TimeSpan CheckerPeriod = TimeSpan.FromMilliseconds(250);

    /// <summary>Runs <see cref="GpuExclusive.Diagnostics.InvariantChecker"/> over the pool (every mmap lock, briefly).</summary>
    private void RunInvariantChecker()
    {
        List<string> found = GpuExclusive.Diagnostics.InvariantChecker.Collect(_pool);
        Interlocked.Increment(ref _invariantChecks);
        if (found.Count > 0)
            Violate($"InvariantChecker: {found[0]}{(found.Count > 1 ? $" (and {found.Count - 1} more)" : string.Empty)}", Invariants.FrameAccounting);
    }

    /// <summary>Runs the invariant checker every <see cref="CheckerPeriod"/>.</summary>
    private void CheckerLoop(ThreadActivity activity)
    {
        while (!_stop)
        {
            activity.Enter("sleeping");
            _stopSignal.Wait(CheckerPeriod);
            if (_stop)
                break;
            activity.Enter("InvariantChecker");
            RunInvariantChecker();
        }
    }
}
