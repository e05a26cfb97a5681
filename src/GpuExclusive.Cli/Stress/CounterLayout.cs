namespace GpuExclusive.Cli.Stress;

/// <summary>
/// Layout of every counter page. Each region has one writer discipline, which is what makes every byte checkable:
/// <code>
///  0        256                          2304                    4088     4096
///  +--------+----------------------------+-----------------------+--------+
///  |counters| worker slots (8 B each,    | never written:        | churn  |
///  |64 x int| slot t written only by     | must always read zero | slot   |
///  |AtomicAdd| worker t)                 |                       | (8 B)  |
///  +--------+----------------------------+-----------------------+--------+
/// </code>
/// </summary>
internal static class CounterLayout
{
    public const int CountersPerPage = 64;
    public const int SlotsOffset = CountersPerPage * sizeof(int);
    public const int MaxWorkers = 256;
    public const int ZeroOffset = SlotsOffset + (MaxWorkers * sizeof(long));
    public const int ChurnSlotOffset = PagePool.PageSize - sizeof(long);

    public static ulong Counter(ulong baseAddress, int page, int counter) =>
        baseAddress + ((ulong)page * PagePool.PageSize) + ((ulong)counter * sizeof(int));

    public static ulong WorkerSlot(ulong baseAddress, int page, int worker) =>
        baseAddress + ((ulong)page * PagePool.PageSize) + SlotsOffset + ((ulong)worker * sizeof(long));

    public static ulong ChurnSlot(ulong baseAddress, int page) =>
        baseAddress + ((ulong)page * PagePool.PageSize) + ChurnSlotOffset;

    /// <summary>The value worker <paramref name="worker"/> writes the <paramref name="sequence"/>th time: its owner is readable from the top bits.</summary>
    public static long SlotValue(int worker, long sequence) => ((long)(worker + 1) << 40) | (sequence & ((1L << 40) - 1));

    /// <summary>The worker that wrote <paramref name="value"/>, or -1 for a slot never written.</summary>
    public static int SlotOwner(long value) => value == 0 ? -1 : (int)(value >> 40) - 1;

    /// <summary>
    /// True if <paramref name="later"/> is not behind <paramref name="earlier"/> for a counter that only ever grows by
    /// positive adds. Compared modulo 2^32, as AtomicAdd wraps like Interlocked.Add.
    /// </summary>
    public static bool NotBehind(int later, int earlier) => unchecked(later - earlier) >= 0;
}
