namespace GpuExclusive.Tests.Engine;

/// <summary><see cref="AddressSpace.Discard"/> on private memory (MADV_DONTNEED): zeros, frames back, and its refusals.</summary>
public sealed class DiscardTests : EngineTest
{
    [Fact]
    public void Discard_Private_ReadsZero_AndFreesTheFrames()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 0xA5);
        var free = Pool.FreePages;

        space.Discard(a, 3 * Page);

        Assert.Equal(free + 3, Pool.FreePages);
        for (ulong i = 0; i < 3; i++)
        {
            var info = space.Inspect(a + i * Page);
            Assert.Equal(PageState.NotPresent, info.State);
            Assert.Equal(-1, info.Frame);
        }
        AssertAllBytes(0, ReadPages(space, a, 3));
    }

    [Fact]
    public void Discard_SubRange_LeavesTheRestIntact()
    {
        var space = NewSpace();
        var a = space.Map(4 * Page, Protection.ReadWrite);
        Fill(space, a, 4, 0x3D);
        var frame0 = space.Inspect(a).Frame;

        space.Discard(a + Page, 2 * Page);

        Assert.Equal(frame0, space.Inspect(a).Frame);
        AssertAllBytes(0x3D, ReadPages(space, a));
        AssertAllBytes(0, ReadPages(space, a + Page, 2));
        AssertAllBytes(0x3D, ReadPages(space, a + 3 * Page));
    }

    [Fact]
    public void Discard_UntouchedPages_IsHarmless()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        var free = Pool.FreePages;

        space.Discard(a, 2 * Page);

        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(PageState.NotPresent, space.Inspect(a).State);
    }

    [Fact]
    public void Write_AfterDiscard_GetsAFreshZeroedPage()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        Fill(space, a, 1, 0xFF);
        space.Discard(a, Page);

        space.Write(a + 4, 1);

        var page = ReadPages(space, a);
        AssertAllBytes(0, page.AsSpan(0, 4));
        AssertAllBytes(0, page.AsSpan(8));
        Assert.Equal(1, space.Read<int>(a + 4));
    }

    [Fact]
    public void Discard_OnReadOnlyPrivateMapping_StillZeroes()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 5);
        space.Protect(a, Page, Protection.Read);

        space.Discard(a, Page);

        Assert.Equal(0, space.Read<int>(a));
        Assert.Equal(Pool.Capacity - 1, Pool.FreePages); // the read faulted in one zero frame
    }

    [Fact]
    public void Discard_InParentAfterFork_ChildKeepsTheData_AndTheFrame()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite);
        parent.Write(a, 31);
        var child = ForkOf(parent);
        var free = Pool.FreePages;

        parent.Discard(a, Page);

        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(31, child.Read<int>(a));
        Assert.Equal(1, child.Inspect(a).MapCount);
        Assert.Equal(0, parent.Read<int>(a));
        AssertInvariants();
    }

    [Fact]
    public void Discard_OnLockedMapping_ThrowsInvalidOperation_AndChangesNothing()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 0x6B);
        space.Lock(a + Page, Page);
        var free = Pool.FreePages;
        var before = space.Inspect(a);

        Assert.Throws<InvalidOperationException>(() => space.Discard(a, 2 * Page));

        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(before, space.Inspect(a));
        AssertAllBytes(0x6B, ReadPages(space, a, 2));
    }

    [Fact]
    public void Discard_OverAHole_ThrowsArgument_AndChangesNothing()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 0x4C);
        space.Unmap(a + Page, Page);
        var free = Pool.FreePages;

        Assert.ThrowsAny<ArgumentException>(() => space.Discard(a, 3 * Page));

        Assert.Equal(free, Pool.FreePages);
        AssertAllBytes(0x4C, ReadPages(space, a));
        AssertAllBytes(0x4C, ReadPages(space, a + 2 * Page));
    }

    [Fact]
    public void Discard_OfUnmappedRange_ThrowsArgument()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Unmap(a, Page);

        Assert.ThrowsAny<ArgumentException>(() => space.Discard(a, Page));
    }
}
