using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GpuExclusive.Paging;

/// <summary>
/// A 4-level radix tree over the 47-bit user virtual space, 9 bits a level, as x86-64 4-level paging: directories
/// are created on demand with compare-and-swap and live as long as the table (like Linux, munmap does not free
/// page tables eagerly), so a lock-free walk never sees a directory disappear. The leaves of the fast span, where
/// mappings go first, keep their PTEs in one flat array (<see cref="FastPtes"/>, like a linear page table), so a CPU
/// access there finds its PTE by indexing, with no walk and no null test.
/// </summary>
internal sealed unsafe class PageTable
{
    /// <summary>One past the highest user virtual address (x86-64's 128 TiB user half).</summary>
    internal const ulong AddressLimit = 1UL << 47;

    /// <summary>Where address spaces place mappings first; <see cref="FastPtes"/> covers <see cref="FastSpan"/> bytes from here.</summary>
    internal const ulong FastBase = 0x1000_0000;

    /// <summary>Bytes the flat PTEs cover (8 GiB: 2 M pages, 4096 leaves; 16 MiB reserved per space, used as leaves appear).</summary>
    internal const ulong FastSpan = 8UL << 30;

    /// <summary>Pages of the fast span: entries of <see cref="FastPtes"/>.</summary>
    internal const ulong FastPages = FastSpan >> PagePool.PageShift;

    /// <summary>Leaves of the fast span: their sequence counts sit just below <see cref="FastPtes"/>.</summary>
    internal const int FastLeaves = (int)(FastSpan / PageTableLeaf.SpanBytes);

    private const int Bits = 9;
    private const int Fanout = 1 << Bits;
    private const int Mask = Fanout - 1;
    private const int L1Shift = 39;
    private const int L2Shift = 30;
    private const int L3Shift = 21;

    // Directories are bare arrays (no wrapper objects) so a walk is three dependent loads to reach the leaf.
    private readonly PageTableLeaf?[]?[]?[] _root = new PageTableLeaf?[]?[]?[Fanout];

    // The leaves of the fast span by leaf index, a cache of the tree's: the fault path finds its leaf with one load
    // instead of a three-level walk. Grown by doubling to the highest leaf used (a space of a few pages pays for a few
    // entries, not for all 4096); a leaf stored into an array just replaced is only missing from the cache, and the
    // next lookup walks the tree and stores it again.
    private PageTableLeaf?[] _fastLeaves = new PageTableLeaf?[8];

    // The flat memory of the fast span: FastLeaves sequence counts, then FastPages PTEs.
    private readonly FastTableMemory _fastMemory = new((nuint)(FastLeaves + (long)FastPages) * sizeof(long));

    internal PageTable()
    {
        FastPtes = _fastMemory.Base + FastLeaves;
    }

    /// <summary>
    /// The PTE of page <c>FastBase + i * PageSize</c> at <c>FastPtes[i]</c>, and the sequence count of the leaf holding
    /// it at <c>FastPtes[(i &gt;&gt; 9) - FastLeaves]</c>: zero (no mapping, an even count) until a leaf is created.
    /// Only leaves write there; every other user reads.
    /// </summary>
    /// <remarks>Valid while this table is reachable: a caller holding only the pointer keeps the table alive itself.</remarks>
    internal long* FastPtes { get; }

    /// <summary>
    /// The index in <see cref="FastPtes"/> of <paramref name="address"/>'s PTE: <see cref="FastPages"/> or more when the
    /// address lies outside the fast span (below it, the subtraction wraps), so one compare is the span check.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong FastPageOf(ulong address) => (address - FastBase) >> PagePool.PageShift;

    /// <summary>The index in <see cref="FastPtes"/> (negative: just below the PTEs) of the sequence count of the leaf holding fast page <paramref name="page"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static nint FastVersionIndex(ulong page) => (nint)(page >> PageTableLeaf.IndexBits) - FastLeaves;

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
    /// Gives the memory of the flat PTEs back to the OS once every PTE is empty (the space is disposed); they read as
    /// zeros afterwards. The sequence counts are kept: resetting one to zero could let a reader that started before
    /// accept a read.
    /// </summary>
    internal void ReleaseFlatPtes() => _fastMemory.Discard(FastLeaves * sizeof(long), FastPages * sizeof(long));

    /// <summary>The PTE of <paramref name="address"/>: in the flat PTEs within the fast span, else in its leaf; null when no leaf covers it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long* FindPte(long* fastPtes, PageTable table, ulong address)
    {
        var page = FastPageOf(address);
        if (page < FastPages)
        {
            return fastPtes + page;
        }

        var leaf = table.FindLeaf(address);
        return leaf is null ? null : leaf.EntriesAddress + PageTableLeaf.IndexOf(address);
    }

    /// <summary>
    /// The sequence count of the leaf holding <paramref name="address"/>'s PTE: below the flat PTEs within the fast span
    /// (an even zero until a leaf exists), else in its leaf; null when no leaf covers it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long* FindVersion(long* fastPtes, PageTable table, ulong address)
    {
        var page = FastPageOf(address);
        if (page < FastPages)
        {
            return fastPtes + FastVersionIndex(page);
        }

        var leaf = table.FindLeaf(address);
        return leaf is null ? null : leaf.VersionAddress;
    }

    /// <summary>The leaf covering <paramref name="address"/>, creating the path to it.</summary>
    internal PageTableLeaf GetOrCreateLeaf(ulong address)
    {
        var fastLeaf = FastPageOf(address) >> PageTableLeaf.IndexBits;
        var cache = Volatile.Read(ref _fastLeaves);
        if (fastLeaf < (ulong)cache.Length && Volatile.Read(ref cache[(int)fastLeaf]) is { } leaf)
        {
            return leaf;
        }

        return GetOrCreateLeafInTree(address);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private PageTableLeaf GetOrCreateLeafInTree(ulong address)
    {
        // The tree's leaf (the winner of any race to create it), so the cache only ever holds the tree's leaves.
        var leaf = GetOrCreateTreeLeaf(address);
        var fastPage = FastPageOf(address);
        if (fastPage < FastPages)
        {
            var fastLeaf = (int)(fastPage >> PageTableLeaf.IndexBits);
            var cache = Volatile.Read(ref _fastLeaves);
            if (fastLeaf >= cache.Length)
            {
                var grown = new PageTableLeaf?[Math.Min(FastLeaves, Math.Max(fastLeaf + 1, cache.Length * 2))];
                cache.CopyTo(grown, 0);
                cache = Interlocked.CompareExchange(ref _fastLeaves, grown, cache) == cache ? grown : Volatile.Read(ref _fastLeaves);
            }

            if (fastLeaf < cache.Length)
            {
                Volatile.Write(ref cache[fastLeaf], leaf);
            }
        }

        return leaf;
    }

    private PageTableLeaf GetOrCreateTreeLeaf(ulong address)
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

        // A fast-span leaf's storage is the table's flat memory: a leaf that loses the race below shares it harmlessly.
        var fastPage = FastPageOf(leafBase);
        var created = fastPage < FastPages
            ? new PageTableLeaf(leafBase, _fastMemory, FastPtes + fastPage, FastPtes + FastVersionIndex(fastPage))
            : new PageTableLeaf(leafBase);
        return Interlocked.CompareExchange(ref slot, created, null) ?? created;
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
