using GpuExclusive.Diagnostics;
using GpuExclusive.Paging;

namespace GpuExclusive.Tests.Engine;

/// <summary>
/// The flat part of the page table: the fast span's PTEs are one array indexed by page, the leaves' sequence counts
/// sit just below it, and a leaf of the span keeps its entries there. Before a leaf exists its PTEs read as empty and
/// an access faults like any unmapped access; nothing but a leaf writes there.
/// </summary>
public sealed class FlatPageTableTests
{
    private const ulong Page = PagePool.PageSize;

    [Fact]
    public void FreshTable_ReadsEmptyPtesAndEvenCounts_AndHasNoLeaves()
    {
        // A leaf's entries are one run of the array only if the span starts on a leaf boundary.
        Assert.Equal(0UL, PageTable.FastBase % PageTableLeaf.SpanBytes);
        var table = new PageTable();
        unsafe
        {
            Assert.True(PageTable.FindPte(table.FastPtes, table, PageTable.FastBase) == table.FastPtes);
            var last = PageTable.FindPte(table.FastPtes, table, PageTable.FastBase + PageTable.FastSpan - 1);
            Assert.True(last == table.FastPtes + (PageTable.FastPages - 1));
            Assert.Equal(0, *last);
            Assert.Equal(0, table.FastPtes[-PageTable.FastLeaves]);
            Assert.Equal(0, table.FastPtes[-1]);
        }

        Assert.Null(table.FindLeaf(PageTable.FastBase));
    }

    [Fact]
    public void LeafOfTheFastSpan_KeepsItsEntriesAndCountInTheFlatArray()
    {
        var table = new PageTable();
        const int LeafNumber = 3;
        var address = PageTable.FastBase + (LeafNumber * PageTableLeaf.SpanBytes) + (5 * Page);
        var leaf = table.GetOrCreateLeaf(address);
        Assert.Same(leaf, table.GetOrCreateLeaf(address + Page));
        unsafe
        {
            Assert.True(leaf.EntriesAddress == table.FastPtes + (LeafNumber * PageTableLeaf.EntryCount));
            Assert.True(leaf.VersionAddress == table.FastPtes - PageTable.FastLeaves + LeafNumber);
            Assert.True(PageTable.FindPte(table.FastPtes, table, address) == leaf.EntriesAddress + 5);

            leaf.Entries[5] = Pte.MakePresent(7, Pte.Young);
            leaf.BeginChange();
            Assert.Equal(Pte.MakePresent(7, Pte.Young), table.FastPtes[(nint)((address - PageTable.FastBase) / Page)]);
            Assert.Equal(1, table.FastPtes[LeafNumber - PageTable.FastLeaves]);
            leaf.EndChange();
            Assert.Equal(0, table.FastPtes[LeafNumber - 1 - PageTable.FastLeaves]);
        }
    }

    [Fact]
    public void LeafOutsideTheFastSpan_HasStorageOfItsOwn_FoundByTheWalk()
    {
        var table = new PageTable();
        var address = PageTable.FastBase + PageTable.FastSpan + (7 * Page);
        var leaf = table.GetOrCreateLeaf(address);
        unsafe
        {
            Assert.True(leaf.EntriesAddress < table.FastPtes - PageTable.FastLeaves || leaf.EntriesAddress >= table.FastPtes + PageTable.FastPages);
            Assert.True(leaf.VersionAddress == leaf.EntriesAddress + PageTableLeaf.EntryCount);
            Assert.True(PageTable.FindPte(table.FastPtes, table, address) == leaf.EntriesAddress + 7);
            Assert.True(PageTable.FindPte(table.FastPtes, table, address + PageTableLeaf.SpanBytes) == null);
        }
    }

    [Fact]
    public void AccessesWhereNoLeafExists_Fault_AndWriteNothing()
    {
        using var pool = new PagePool(16);
        using var space = new AddressSpace(pool);
        var mapped = space.Map(4 * Page, Protection.ReadWrite);
        // Far from the mapping, inside the fast span: no leaf was ever created there.
        var nowhere = PageTable.FastBase + PageTable.FastSpan - (64 * Page);
        Assert.InRange(mapped, PageTable.FastBase, nowhere - 1);

        Assert.Throws<MemoryAccessException>(() => space.Read<int>(nowhere));
        Assert.Throws<MemoryAccessException>(() => space.Read<long>(nowhere + 8));
        Assert.Throws<MemoryAccessException>(() => space.Write(nowhere, 42));
        Assert.Throws<MemoryAccessException>(() => space.AtomicAdd(nowhere, 1));
        Assert.Throws<MemoryAccessException>(() => space.Write(nowhere, new byte[16]));
        Assert.Equal(PageState.Unmapped, space.Inspect(nowhere).State);
        Assert.Equal(0, space.PeekPte(nowhere));

        // A mapped page whose leaf does not exist yet is demand-faulted and then read through the flat array.
        space.Write(mapped + Page, 7);
        Assert.Equal(7, space.Read<int>(mapped + Page));
        Assert.Empty(InvariantChecker.Collect(pool));
    }

    [Fact]
    public void ReleaseFlatPtes_ZeroesThePtes_ButKeepsTheSequenceCounts()
    {
        var table = new PageTable();
        var leaf = table.GetOrCreateLeaf(PageTable.FastBase + (9 * PageTableLeaf.SpanBytes));
        leaf.Entries[3] = Pte.MakePresent(11, Pte.Young);
        leaf.BeginChange();
        leaf.EndChange();

        table.ReleaseFlatPtes();

        Assert.Equal(0, leaf.Entries[3]);
        // A count going back to zero could let a read that started before it match again: it must survive.
        Assert.Equal(2, leaf.Version);
    }

    [Fact]
    public void ReadsOfADisposedSpace_ThrowObjectDisposed_NotCrash()
    {
        using var pool = new PagePool(16);
        var space = new AddressSpace(pool);
        var address = space.Map(2 * Page, Protection.ReadWrite);
        space.Write(address, 5);
        Assert.Equal(5, space.Read<int>(address));

        space.Dispose();

        Assert.Throws<ObjectDisposedException>(() => space.Read<int>(address));
        Assert.Throws<ObjectDisposedException>(() => space.Write(address, 6));
        Assert.Equal(0, space.PeekPte(address));
        Assert.Equal(pool.Capacity, pool.FreePages);
    }
}
