namespace GpuExclusive.Paging;

/// <summary>A last-level page table: 512 PTEs covering 2 MiB, with its own lock (Linux's split PTE lock).</summary>
internal sealed class PageTableLeaf(ulong baseAddress)
{
    internal const int EntryCount = 512;
    internal const ulong SpanBytes = (ulong)EntryCount * PagePool.PageSize;

    /// <summary>The PTEs. Changed under <see cref="Lock"/>, except that CPU accesses CAS Young/Dirty/SoftDirty into present entries.</summary>
    internal readonly long[] Entries = new long[EntryCount];

    /// <summary>The PTE lock: serialises every change to <see cref="Entries"/> other than the accessed/dirty bits.</summary>
    internal readonly Lock Lock = new();

    /// <summary>
    /// A sequence count over the entries (a seqlock): odd while a writer holding <see cref="Lock"/> changes an entry in
    /// a way a reader must not miss (a frame replaced or dropped, access revoked), bumped to even after. CPU reads
    /// validate against it instead of announcing themselves, so they need no thread-local state and no store.
    /// </summary>
    internal int Version;

    /// <summary>Opens a change that readers must notice. Caller holds <see cref="Lock"/>; pair with <see cref="EndChange"/>.</summary>
    internal void BeginChange() => Volatile.Write(ref Version, Version + 1);

    /// <summary>Closes the change opened by <see cref="BeginChange"/>.</summary>
    internal void EndChange() => Volatile.Write(ref Version, Version + 1);

    /// <summary>The virtual address of entry 0.</summary>
    internal ulong BaseAddress { get; } = baseAddress;

    internal static int IndexOf(ulong address) => (int)((address >> PagePool.PageShift) & (EntryCount - 1));

    internal ulong AddressOf(int index) => BaseAddress + ((ulong)index << PagePool.PageShift);
}
