using GpuExclusive.Diagnostics;
using GpuExclusive.Paging;

namespace GpuExclusive.Tests.Engine;

/// <summary>
/// The page table's fast directory: slots of the fast span that have no leaf yet share one block of empty entries,
/// so CPU accesses need no null test. An access through such a slot must fault like any unmapped access, and nothing
/// may ever write the shared block.
/// </summary>
public sealed class FastDirectoryTests
{
    private const ulong Page = PagePool.PageSize;

    [Fact]
    public void FreshTable_PointsEveryFastSlotAtTheEmptyEntries_AndHasNoLeaves()
    {
        // Slots are leaves only if the span starts on a leaf boundary (GetOrCreateLeaf publishes by leaf base).
        Assert.Equal(0UL, PageTable.FastBase % PageTableLeaf.SpanBytes);
        var table = new PageTable();
        unsafe
        {
            var first = PageTable.FindFastEntries(table.FastDirectory, PageTable.FastBase);
            var last = PageTable.FindFastEntries(table.FastDirectory, PageTable.FastBase + PageTable.FastSpan - 1);
            Assert.True(first != null && first == last, "slots without a leaf must share the empty entries");
            for (var i = 0; i <= PageTableLeaf.EntryCount; i++)
            {
                Assert.Equal(0, first[i]);
            }
        }

        Assert.Null(table.FindLeaf(PageTable.FastBase));
    }

    [Fact]
    public void CreatingALeaf_PublishesItsEntries_InItsSlotOnly()
    {
        var table = new PageTable();
        var address = PageTable.FastBase + (3 * PageTableLeaf.SpanBytes) + (5 * Page);
        var leaf = table.GetOrCreateLeaf(address);
        unsafe
        {
            Assert.True(PageTable.FindFastEntries(table.FastDirectory, address) == leaf.EntriesAddress);
            Assert.True(PageTable.FindEntries(table.FastDirectory, table, address) == leaf.EntriesAddress);
            var neighbour = PageTable.FindFastEntries(table.FastDirectory, address + PageTableLeaf.SpanBytes);
            Assert.True(neighbour != leaf.EntriesAddress && neighbour[PageTableLeaf.IndexOf(address)] == 0);
        }
    }

    [Fact]
    public void AccessesWhereNoLeafExists_Fault_AndLeaveTheSharedEntriesZero()
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

        // A mapped page whose leaf does not exist yet is demand-faulted through the same slot and works.
        space.Write(mapped + Page, 7);
        Assert.Equal(7, space.Read<int>(mapped + Page));
        Assert.True(PageTable.EmptyEntriesUntouched);
        Assert.Empty(InvariantChecker.Collect(pool));
    }
}
