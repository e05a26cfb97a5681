using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GpuExclusive.Paging;

/// <summary>
/// A 4-level radix tree over the 47-bit user virtual space, 9 bits a level, as x86-64 4-level paging: directories
/// are created on demand with compare-and-swap and live as long as the table (like Linux, munmap does not free
/// page tables eagerly), so a lock-free walk never sees a directory disappear.
/// </summary>
internal sealed unsafe class PageTable
{
    /// <summary>One past the highest user virtual address (x86-64's 128 TiB user half).</summary>
    internal const ulong AddressLimit = 1UL << 47;

    /// <summary>Where address spaces place mappings first; the fast directory below covers <see cref="FastSpan"/> bytes from here.</summary>
    internal const ulong FastBase = 0x1000_0000;

    /// <summary>Bytes the fast directory covers (8 GiB: 4096 leaves, a 32 KiB array per space).</summary>
    internal const ulong FastSpan = 8UL << 30;

    private const int Bits = 9;
    private const int Fanout = 1 << Bits;
    private const int Mask = Fanout - 1;
    private const int L1Shift = 39;
    private const int L2Shift = 30;
    private const int L3Shift = 21;

    // Directories are bare arrays (no wrapper objects) so a walk is three dependent loads to reach the leaf.
    private readonly PageTableLeaf?[]?[]?[] _root = new PageTableLeaf?[]?[]?[Fanout];

    /// <summary>
    /// A flat directory of the leaves' entries (<see cref="PageTableLeaf.EntriesAddress"/>) for
    /// <c>[FastBase, FastBase + FastSpan)</c>, where mappings go first: CPU accesses there reach a PTE in two dependent
    /// loads instead of five. A slot with no leaf yet holds <see cref="s_noEntries"/>; a leaf's entries are published
    /// when it is created. Pinned, so <see cref="FastDirectory"/> stays valid for the table's life and the read path
    /// indexes it with no null or bounds check.
    /// </summary>
    private readonly nint[] _fastDirectory = GC.AllocateArray<nint>((int)FastSlots, pinned: true);

    /// <summary>
    /// The entries of every fast-directory slot that has no leaf: 512 empty PTEs and an even sequence count, never
    /// written (an access to an empty PTE faults before it could set a bit), so the CPU paths need no null test.
    /// </summary>
    private static readonly long[] s_noEntries = GC.AllocateArray<long>(PageTableLeaf.EntryCount + 1, pinned: true);

    /// <summary>Whether the shared empty entries are still all zero: the invariant checker's and DEBUG builds' check that no access wrote them.</summary>
    internal static bool EmptyEntriesUntouched => Array.TrueForAll(s_noEntries, static entry => entry == 0);

    internal PageTable()
    {
        FastDirectory = (long**)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_fastDirectory));
        _fastDirectory.AsSpan().Fill((nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(s_noEntries)));
    }

    /// <summary>The first slot of the fast directory: each slot holds the entries of the leaf covering that 2 MiB, or empty ones.</summary>
    /// <remarks>Valid while this table is reachable: a caller holding only the pointer keeps the table alive itself.</remarks>
    internal long** FastDirectory { get; }

    /// <summary>The leaf covering <paramref name="address"/>, or null when none was ever created or the address is past the space.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal PageTableLeaf? FindLeaf(ulong address)
    {
        // The walk below reads 9 bits a level and ignores bits 48..63: without this, address + 2^48 would find the
        // leaf of address and a CPU access would read or write a page that no mapping covers at that address.
        if (address >= AddressLimit)
        {
            return null;
        }

        // Indices are masked to 0..511 and every directory holds 512 slots: no bounds checks on the walk.
        var l2 = Slot(_root, (int)(address >> L1Shift) & Mask);
        if (l2 is null)
        {
            return null;
        }

        var l3 = Slot(l2, (int)(address >> L2Shift) & Mask);
        return l3 is null ? null : Slot(l3, (int)(address >> L3Shift) & Mask);
    }

    /// <summary>
    /// The entries (PTEs, then the sequence count) covering <paramref name="address"/>, the fast directory first; empty
    /// entries there or null elsewhere when no leaf covers it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long* FindEntries(long** fastDirectory, PageTable table, ulong address)
    {
        var slot = FastSlotOf(address);
        if (slot < FastSlots)
        {
            return fastDirectory[(nint)slot];
        }

        var leaf = table.FindLeaf(address);
        return leaf is null ? null : leaf.EntriesAddress;
    }

    /// <summary>The entries covering <paramref name="address"/>, which must lie in the fast directory's span; never null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long* FindFastEntries(long** fastDirectory, ulong address) =>
        fastDirectory[(nint)FastSlotOf(address)];

    /// <summary>Slots of the fast directory: one per leaf of the fast span.</summary>
    internal const ulong FastSlots = FastSpan / PageTableLeaf.SpanBytes;

    /// <summary>
    /// The fast-directory slot of <paramref name="address"/>; <see cref="FastSlots"/> or more when the address lies
    /// outside the fast span (below it, the subtraction wraps), so one compare of the slot is the span check.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong FastSlotOf(ulong address) => (address - FastBase) / PageTableLeaf.SpanBytes;

    /// <summary>The leaf covering <paramref name="address"/>, creating the path to it.</summary>
    internal PageTableLeaf GetOrCreateLeaf(ulong address)
    {
        var l2 = GetOrCreate(_root, (int)(address >> L1Shift) & Mask);
        var l3 = GetOrCreate(l2, (int)(address >> L2Shift) & Mask);
        var leafBase = address & ~(PageTableLeaf.SpanBytes - 1);
        ref var slot = ref l3[(int)(address >> L3Shift) & Mask];
        var existing = Volatile.Read(ref slot);
        if (existing is not null)
        {
            return existing;
        }

        var created = new PageTableLeaf(leafBase);
        existing = Interlocked.CompareExchange(ref slot, created, null);
        if (existing is not null)
        {
            return existing;
        }

        if (leafBase - FastBase < FastSpan)
        {
            Debug.Assert(EmptyEntriesUntouched, "the shared empty entries were written");
            Volatile.Write(ref _fastDirectory[(leafBase - FastBase) / PageTableLeaf.SpanBytes], (nint)created.EntriesAddress);
        }

        return created;
    }

    /// <summary>Calls <paramref name="visit"/> for every existing leaf that overlaps <c>[start, end)</c>, in address order.</summary>
    internal void ForEachLeaf<TState>(ulong start, ulong end, ref TState state, LeafVisitor<TState> visit)
    {
        var address = start & ~(PageTableLeaf.SpanBytes - 1);
        while (address < end)
        {
            var leaf = FindLeaf(address);
            if (leaf is not null)
            {
                var first = address < start ? PageTableLeaf.IndexOf(start) : 0;
                var leafEnd = address + PageTableLeaf.SpanBytes;
                var last = leafEnd > end ? PageTableLeaf.IndexOf(end - 1) : PageTableLeaf.EntryCount - 1;
                visit(leaf, first, last, ref state);
            }

            address += PageTableLeaf.SpanBytes;
        }
    }

    /// <summary>Every leaf that exists, in address order (for invariant checks; walks only allocated directories).</summary>
    internal IEnumerable<PageTableLeaf> AllLeaves()
    {
        foreach (var l2 in _root)
        {
            if (l2 is null)
            {
                continue;
            }

            foreach (var l3 in l2)
            {
                if (l3 is null)
                {
                    continue;
                }

                foreach (var leaf in l3)
                {
                    if (leaf is not null)
                    {
                        yield return leaf;
                    }
                }
            }
        }
    }

    internal delegate void LeafVisitor<TState>(PageTableLeaf leaf, int firstIndex, int lastIndex, ref TState state);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Slot<T>(T[] directory, int index) =>
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(directory), index);

    private static T[] GetOrCreate<T>(T[]?[] slots, int index)
    {
        var existing = Volatile.Read(ref slots[index]);
        if (existing is not null)
        {
            return existing;
        }

        var created = new T[Fanout];
        return Interlocked.CompareExchange(ref slots[index], created, null) ?? created;
    }
}
