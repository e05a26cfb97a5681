using GpuExclusive.Paging;

namespace GpuExclusive.Tests.Engine;

/// <summary>
/// A fault finds its area through a one-entry cache of the last area found, and its leaf through the fast span's leaf
/// array: neither may outlive the change that makes it wrong.
/// </summary>
public sealed class AreaLookupTests : EngineTest
{
    [Fact]
    public void FaultAfterTheLastFaultedAreaIsUnmapped_Throws_AndMapsNothing()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        space.Write(a, 1); // the fault finds, and remembers, this area
        var free = Pool.FreePages;

        space.Unmap(a, 2 * Page);

        Assert.Throws<MemoryAccessException>(() => space.Write(a + Page, 2));
        Assert.Throws<MemoryAccessException>(() => space.Read<int>(a));
        Assert.Equal(PageState.Unmapped, space.Inspect(a + Page).State);
        Assert.Equal(free + 1, Pool.FreePages);
    }

    [Fact]
    public void FaultAfterTheLastFaultedAreaIsSplit_UsesThePiecesProtection()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        space.Write(a + (2 * Page), 1);

        space.Protect(a + Page, 2 * Page, Protection.Read);

        Assert.Throws<MemoryAccessException>(() => space.Write(a + Page, 2));
        space.Write(a, 3);
        Assert.Equal(3, space.Read<int>(a));
    }

    [Fact]
    public void FastSpanLeaf_IsTheOneTheTreeHolds_WhicheverLookupCreatedIt()
    {
        var table = new PageTable();
        var address = PageTable.FastBase + (7 * PageTableLeaf.SpanBytes) + (3 * Page);

        var created = table.GetOrCreateLeaf(address);

        Assert.Same(created, table.FindLeaf(address));
        Assert.Same(created, table.GetOrCreateLeaf(address + Page));
        Assert.Null(table.FindLeaf(address + PageTableLeaf.SpanBytes));
        var next = table.GetOrCreateLeaf(address + PageTableLeaf.SpanBytes);
        Assert.NotSame(created, next);
        Assert.Same(next, table.FindLeaf(address + PageTableLeaf.SpanBytes));

        // The leaf cache grows to the highest leaf used; the leaves before keep being the tree's.
        var last = PageTable.FastBase + PageTable.FastSpan - Page;
        var far = table.GetOrCreateLeaf(last);
        Assert.Same(far, table.FindLeaf(last));
        Assert.Same(far, table.GetOrCreateLeaf(last - Page));
        Assert.Same(created, table.GetOrCreateLeaf(address));
        Assert.Same(next, table.GetOrCreateLeaf(address + PageTableLeaf.SpanBytes));
    }
}
