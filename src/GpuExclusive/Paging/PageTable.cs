using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GpuExclusive.Paging;

/// <summary>
/// A 4-level radix tree over the 47-bit user virtual space, 9 bits a level, as x86-64 4-level paging: directories
/// are created on demand with compare-and-swap and live as long as the table (like Linux, munmap does not free
/// page tables eagerly), so a lock-free walk never sees a directory disappear.
/// </summary>
internal sealed class PageTable
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
    /// A flat directory of the leaves' entry arrays for <c>[FastBase, FastBase + FastSpan)</c>, where mappings go first:
    /// CPU accesses there reach a PTE in two dependent loads instead of five. Published when a leaf is created.
    /// </summary>
    internal readonly long[]?[] FastEntries = new long[]?[FastSpan / PageTableLeaf.SpanBytes];

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

    /// <summary>The entries (PTEs, then the sequence count) covering <paramref name="address"/>, or null; the fast directory first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long[]? FindEntries(long[]?[] fastEntries, PageTable table, ulong address) =>
        address - FastBase < FastSpan ? FindFastEntries(fastEntries, address) : table.FindLeaf(address)?.Entries;

    /// <summary>The entries covering <paramref name="address"/>, which must lie in the fast directory's span, or null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long[]? FindFastEntries(long[]?[] fastEntries, ulong address) =>
        // A native-sized index: no sign extension on the CPU read path.
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(fastEntries), (nint)((address - FastBase) / PageTableLeaf.SpanBytes));

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
            Volatile.Write(ref FastEntries[(leafBase - FastBase) / PageTableLeaf.SpanBytes], created.Entries);
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
