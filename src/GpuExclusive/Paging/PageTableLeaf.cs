using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GpuExclusive.Paging;

/// <summary>A last-level page table: 512 PTEs covering 2 MiB, with its own lock (Linux's split PTE lock).</summary>
/// <remarks>
/// A leaf of the fast span keeps its PTEs and sequence count in its table's flat memory
/// (<see cref="PageTable.FastPtes"/>), where CPU reads index them directly; any other leaf owns a pinned array of its
/// own. Either way they are reached through raw pointers that stay valid as long as the leaf is reachable.
/// </remarks>
internal sealed unsafe class PageTableLeaf
{
    /// <summary>Address bits a leaf's entry index takes (above the page offset).</summary>
    internal const int IndexBits = 9;
    internal const int EntryCount = 1 << IndexBits;
    internal const ulong SpanBytes = (ulong)EntryCount * PagePool.PageSize;

    // Storage of a leaf outside the fast span: its PTEs, then its sequence count. Pinned, so the pointers hold.
    private readonly long[]? _storage;

    // The flat memory a fast-span leaf's pointers point into, held so that a leaf kept alive keeps it mapped.
    private readonly FastTableMemory? _flatMemory;

    /// <summary>A leaf outside the fast span, with storage of its own.</summary>
    internal PageTableLeaf(ulong baseAddress)
    {
        BaseAddress = baseAddress;
        _storage = GC.AllocateArray<long>(EntryCount + 1, pinned: true);
        EntriesAddress = (long*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_storage));
        VersionAddress = EntriesAddress + EntryCount;
    }

    /// <summary>A leaf of the fast span, whose PTEs and sequence count live in its table's flat memory.</summary>
    internal PageTableLeaf(ulong baseAddress, FastTableMemory flatMemory, long* entries, long* version)
    {
        BaseAddress = baseAddress;
        _flatMemory = flatMemory;
        EntriesAddress = entries;
        VersionAddress = version;
    }

    /// <summary>
    /// The PTEs. They change under <see cref="Lock"/>, except that CPU accesses CAS Young/Dirty/SoftDirty into present
    /// entries.
    /// </summary>
    internal Span<long> Entries => new(EntriesAddress, EntryCount);

    /// <summary>
    /// The sequence count: odd while a writer holding <see cref="Lock"/> changes an entry in a way a reader must not
    /// miss (a frame replaced or dropped, access revoked), even otherwise. CPU reads validate against it (a seqlock)
    /// instead of announcing themselves, so they need no thread-local state and no store.
    /// </summary>
    internal ref long Version => ref *VersionAddress;

    /// <summary>The address of entry 0; valid while this leaf is reachable (leaves live as long as their table).</summary>
    internal readonly long* EntriesAddress;

    /// <summary>The address of <see cref="Version"/>.</summary>
    internal readonly long* VersionAddress;

    /// <summary>The PTE lock: serialises every change to <see cref="Entries"/> other than the accessed/dirty bits.</summary>
    internal readonly PteLock Lock = new();

    /// <summary>Opens a change that readers must notice. Caller holds <see cref="Lock"/>; pair with <see cref="EndChange"/>.</summary>
    internal void BeginChange() => Volatile.Write(ref Version, Version + 1);

    /// <summary>Closes the change opened by <see cref="BeginChange"/>.</summary>
    internal void EndChange() => Volatile.Write(ref Version, Version + 1);

    /// <summary>The virtual address of entry 0.</summary>
    internal ulong BaseAddress { get; }

    internal static int IndexOf(ulong address) => (int)((address >> PagePool.PageShift) & (EntryCount - 1));

    internal ulong AddressOf(int index) => BaseAddress + ((ulong)index << PagePool.PageShift);
}
