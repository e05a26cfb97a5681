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

    /// <summary>The virtual address of entry 0.</summary>
    internal ulong BaseAddress { get; } = baseAddress;

    internal static int IndexOf(ulong address) => (int)((address >> PagePool.PageShift) & (EntryCount - 1));

    internal ulong AddressOf(int index) => BaseAddress + ((ulong)index << PagePool.PageShift);
}
