namespace GpuExclusive.Tests.Engine;

/// <summary>Partial Unmap/Protect/Lock split a mapping; the pieces keep their own attributes and data.</summary>
public sealed class VmaSplitTests : EngineTest
{
    [Fact]
    public void Protect_MiddlePage_SplitsTheMapping()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 0x2A);

        space.Protect(a + Page, Page, Protection.Read);

        space.Write(a, 1);
        space.Write(a + 2 * Page, 3);
        Assert.Throws<MemoryAccessException>(() => space.Write(a + Page, 2));
        Assert.True(space.Inspect(a).Writable);
        Assert.False(space.Inspect(a + Page).Writable);
        Assert.True(space.Inspect(a + 2 * Page).Writable);
        Assert.Equal(1, space.Read<int>(a));
        AssertAllBytes(0x2A, ReadPages(space, a + Page));
        Assert.Equal(3, space.Read<int>(a + 2 * Page));
    }

    [Fact]
    public void Protect_AcrossSplitPieces_AppliesToAllOfThem()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 0x2B);
        space.Protect(a + Page, Page, Protection.None);

        space.Protect(a, 3 * Page, Protection.Read);
        Assert.Throws<MemoryAccessException>(() => space.Write(a, 0));
        Assert.Throws<MemoryAccessException>(() => space.Write(a + 2 * Page, 0));

        space.Protect(a, 3 * Page, Protection.ReadWrite);
        AssertAllBytes(0x2B, ReadPages(space, a, 3));
        space.Write(a + Page, 5);
        Assert.Equal(5, space.Read<int>(a + Page));
    }

    [Fact]
    public void Unmap_MiddlePage_LeavesTheNeighboursMapped()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 0x2C);
        var free = Pool.FreePages;

        space.Unmap(a + Page, Page);

        Assert.Equal(free + 1, Pool.FreePages);
        Assert.Equal(PageState.Unmapped, space.Inspect(a + Page).State);
        var e = Assert.Throws<MemoryAccessException>(() => space.Read<int>(a + Page + 12));
        Assert.Equal(a + Page + 12, e.Address);
        Assert.False(e.IsWrite);
        AssertAllBytes(0x2C, ReadPages(space, a));
        AssertAllBytes(0x2C, ReadPages(space, a + 2 * Page));
        space.Write(a + 2 * Page, 1);
    }

    [Fact]
    public void Unmap_HeadAndTail_LeavesTheMiddle()
    {
        var space = NewSpace();
        var a = space.Map(4 * Page, Protection.ReadWrite);
        Fill(space, a, 4, 0x2D);

        space.Unmap(a, Page);
        space.Unmap(a + 3 * Page, Page);

        Assert.Equal(PageState.Unmapped, space.Inspect(a).State);
        Assert.Equal(PageState.Unmapped, space.Inspect(a + 3 * Page).State);
        AssertAllBytes(0x2D, ReadPages(space, a + Page, 2));
        Assert.Equal(Pool.Capacity - 2, Pool.FreePages);
    }

    [Fact]
    public void Unmap_AcrossHoles_IsAllowed_AndUnmapsWhatIsThere()
    {
        var space = NewSpace();
        var a = space.Map(5 * Page, Protection.ReadWrite);
        Fill(space, a, 5, 1);
        space.Unmap(a + Page, Page);
        space.Unmap(a + 3 * Page, Page);

        space.Unmap(a, 5 * Page);
        space.Unmap(a, 5 * Page); // nothing left there: still fine, as munmap

        for (ulong i = 0; i < 5; i++)
            Assert.Equal(PageState.Unmapped, space.Inspect(a + i * Page).State);
        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    [Fact]
    public void Unmap_SpanningTwoMappings_UnmapsBothParts()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        var b = space.Map(2 * Page, Protection.ReadWrite);
        space.Write(a, 1);
        space.Write(b + Page, 2);
        var low = Math.Min(a, b);
        var high = Math.Max(a, b) + 2 * Page;

        space.Unmap(low, high - low);

        Assert.Equal(PageState.Unmapped, space.Inspect(a).State);
        Assert.Equal(PageState.Unmapped, space.Inspect(b + Page).State);
        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    [Fact]
    public void Map_AfterUnmap_GivesZeroPages()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 0xFA);
        space.Unmap(a, 2 * Page);

        var b = space.Map(2 * Page, Protection.ReadWrite);

        Assert.Equal(PageState.NotPresent, space.Inspect(b).State);
        AssertAllBytes(0, ReadPages(space, b, 2));
    }

    [Fact]
    public void SplitMappings_SurviveFork_WithTheirAttributes()
    {
        var parent = NewSpace();
        var a = parent.Map(3 * Page, Protection.ReadWrite);
        Fill(parent, a, 3, 0x2E);
        parent.Protect(a + Page, Page, Protection.Read);
        parent.Unmap(a + 2 * Page, Page);

        var child = ForkOf(parent);

        Assert.Throws<MemoryAccessException>(() => child.Write(a + Page, 1));
        Assert.Equal(PageState.Unmapped, child.Inspect(a + 2 * Page).State);
        child.Write(a, 1);
        Assert.Equal(0x2E2E2E2E, parent.Read<int>(a));
        AssertAllBytes(0x2E, ReadPages(child, a + Page));
    }

    [Fact]
    public void Protect_SplitPiecesOfASharedMapping_StayShared()
    {
        var parent = NewSpace();
        var a = parent.Map(3 * Page, Protection.ReadWrite, Sharing.Shared);
        parent.Protect(a + Page, Page, Protection.Read);
        var child = ForkOf(parent);

        child.Write(a + 2 * Page, 6);
        parent.Write(a, 7);

        Assert.Equal(6, parent.Read<int>(a + 2 * Page));
        Assert.Equal(7, child.Read<int>(a));
    }
}
