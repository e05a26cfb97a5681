namespace GpuExclusive;

// Work a notifier callback defers until the CPU access whose fault it runs under is done.
public sealed partial class AddressSpace
{
    // > 0 while this thread resolves a fault of its own CPU access (HandleFault), so a callback can tell that case
    // from a device read's fault or a hand-back, which no access follows.
    [ThreadStatic]
    private static int t_faultingAccesses;

    [ThreadStatic]
    private static List<Action>? t_afterAccess;

    /// <summary>
    /// Runs <paramref name="work"/> on this thread once the CPU access whose fault is being resolved here is done and
    /// its frame lock released — how a device mirror gives a page straight back to a batch that waits for it, after
    /// the CPU access that took it (docs/architecture.md, "FIFO hand-off"). Dropped when this thread is not resolving
    /// a fault of a CPU access: then no access follows.
    /// </summary>
    internal static void DeferUntilAccessDone(Action work)
    {
        if (t_faultingAccesses > 0)
        {
            (t_afterAccess ??= []).Add(work);
        }
    }

    /// <summary>Runs what callbacks deferred during this access's faults (called as the access method returns or throws).</summary>
    private static void RunDeferredAfterAccess()
    {
        var deferred = t_afterAccess;
        if (deferred is null || deferred.Count == 0)
        {
            return;
        }

        var work = deferred.ToArray();
        deferred.Clear();
        foreach (var item in work)
        {
            item();
        }
    }
}
