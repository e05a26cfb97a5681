using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GpuExclusive.Paging;

/// <summary>A last-level page table: 512 PTEs covering 2 MiB, with its own lock (Linux's split PTE lock).</summary>
internal sealed unsafe class PageTableLeaf
{
    internal const int EntryCount = 512;
    internal const ulong SpanBytes = (ulong)EntryCount * PagePool.PageSize;

    /// <summary>Index of the sequence count in <see cref="Entries"/>, right after the PTEs (same array: one load fewer for readers).</summary>
    internal const int VersionIndex = EntryCount;

    /// <summary>
    /// The PTEs, then the sequence count. PTEs change under <see cref="Lock"/>, except that CPU accesses CAS
    /// Young/Dirty/SoftDirty into present entries. The sequence count is odd while a writer holding the lock changes an
    /// entry in a way a reader must not miss (a frame replaced or dropped, access revoked) and even otherwise: CPU reads
    /// validate against it (a seqlock) instead of announcing themselves, so they need no thread-local state and no store.
    /// </summary>
    /// <remarks>
    /// Allocated on the pinned object heap, so <see cref="EntriesAddress"/> stays valid for the leaf's life: the CPU
    /// access paths reach a PTE through raw pointers, without the array's null check and header offset.
    /// </remarks>
    internal readonly long[] Entries = GC.AllocateArray<long>(EntryCount + 1, pinned: true);

    /// <summary>The address of <c>Entries[0]</c>; valid while this leaf is reachable (leaves live as long as their table).</summary>
    internal readonly long* EntriesAddress;

    internal PageTableLeaf(ulong baseAddress)
    {
        BaseAddress = baseAddress;
        EntriesAddress = (long*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Entries));
    }

    /// <summary>The PTE lock: serialises every change to <see cref="Entries"/> other than the accessed/dirty bits.</summary>
    internal readonly PteLock Lock = new();

    /// <summary>Opens a change that readers must notice. Caller holds <see cref="Lock"/>; pair with <see cref="EndChange"/>.</summary>
    internal void BeginChange() => Volatile.Write(ref Entries[VersionIndex], Entries[VersionIndex] + 1);

    /// <summary>Closes the change opened by <see cref="BeginChange"/>.</summary>
    internal void EndChange() => Volatile.Write(ref Entries[VersionIndex], Entries[VersionIndex] + 1);

    /// <summary>The virtual address of entry 0.</summary>
    internal ulong BaseAddress { get; }

    internal static int IndexOf(ulong address) => (int)((address >> PagePool.PageShift) & (EntryCount - 1));

    internal ulong AddressOf(int index) => BaseAddress + ((ulong)index << PagePool.PageShift);
}
