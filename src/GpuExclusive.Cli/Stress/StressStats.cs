namespace GpuExclusive.Cli.Stress;

/// <summary>
/// Counts of one thread's operations. Written only by the owning thread, read racily by the progress display (a
/// stale count is fine there). Each thread allocates its own, so two threads' counts rarely share a cache line.
/// </summary>
internal sealed class StressStats
{
    public long AtomicAdds;
    public long RejectedWrites;
    public long Reads;
    public long SlotWrites;
    public long SpanReads;
    public long Inspects;
    public long Forks;
    public long GrandchildForks;
    public long ProtectWindows;
    public long SoftDirtyClears;
    public long LockUnlocks;
    public long Discards;
    public long Remaps;

    public long WorkerOperations => AtomicAdds + RejectedWrites + Reads + SlotWrites + SpanReads + Inspects;

    public long ChurnOperations => Forks + ProtectWindows + SoftDirtyClears + LockUnlocks + Discards + Remaps;

    /// <summary>Sums <paramref name="all"/> into a new instance (racy reads; exact once the threads have stopped).</summary>
    public static StressStats Sum(IEnumerable<StressStats> all)
    {
        var total = new StressStats();
        foreach (StressStats s in all)
        {
            total.AtomicAdds += Volatile.Read(ref s.AtomicAdds);
            total.RejectedWrites += Volatile.Read(ref s.RejectedWrites);
            total.Reads += Volatile.Read(ref s.Reads);
            total.SlotWrites += Volatile.Read(ref s.SlotWrites);
            total.SpanReads += Volatile.Read(ref s.SpanReads);
            total.Inspects += Volatile.Read(ref s.Inspects);
            total.Forks += Volatile.Read(ref s.Forks);
            total.GrandchildForks += Volatile.Read(ref s.GrandchildForks);
            total.ProtectWindows += Volatile.Read(ref s.ProtectWindows);
            total.SoftDirtyClears += Volatile.Read(ref s.SoftDirtyClears);
            total.LockUnlocks += Volatile.Read(ref s.LockUnlocks);
            total.Discards += Volatile.Read(ref s.Discards);
            total.Remaps += Volatile.Read(ref s.Remaps);
        }

        return total;
    }

    /// <summary>Name and count of every operation kind, for the summary table and the JSON report.</summary>
    public IEnumerable<(string Name, long Count)> Rows()
    {
        yield return ("atomicAdds", AtomicAdds);
        yield return ("rejectedWrites", RejectedWrites);
        yield return ("reads", Reads);
        yield return ("slotWrites", SlotWrites);
        yield return ("spanReads", SpanReads);
        yield return ("inspects", Inspects);
        yield return ("forks", Forks);
        yield return ("grandchildForks", GrandchildForks);
        yield return ("protectWindows", ProtectWindows);
        yield return ("softDirtyClears", SoftDirtyClears);
        yield return ("lockUnlocks", LockUnlocks);
        yield return ("discards", Discards);
        yield return ("remaps", Remaps);
    }
}
