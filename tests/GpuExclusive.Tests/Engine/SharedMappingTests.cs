namespace GpuExclusive.Tests.Engine;

/// <summary>Shared anonymous mappings stay shared across fork (both directions, pages touched before or after), and Discard keeps their data.</summary>
public sealed class SharedMappingTests : EngineTest
{
    [Fact]
    public void Write_InParentAfterFork_IsSeenByChild()
    {
        var parent = NewSpace();
        var a = parent.Map(2 * Page, Protection.ReadWrite, Sharing.Shared);
        parent.Write(a, 1);
        var child = ForkOf(parent);

        parent.Write(a, 2);

        Assert.Equal(2, child.Read<int>(a));
        Assert.Equal(parent.Inspect(a).Frame, child.Inspect(a).Frame);
    }

    [Fact]
    public void Write_InChildAfterFork_IsSeenByParent_WithoutAllocating()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite, Sharing.Shared);
        Fill(parent, a, 1, 0x21);
        var child = ForkOf(parent);
        var frame = parent.Inspect(a).Frame;
        var free = Pool.FreePages;

        child.Write(a + 100, 0x0BADF00D);

        Assert.Equal(0x0BADF00D, parent.Read<int>(a + 100));
        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(frame, child.Inspect(a).Frame);
        Assert.Equal(frame, parent.Inspect(a).Frame);
    }

    [Fact]
    public void PageFirstTouchedAfterFork_IsShared_InBothDirections()
    {
        var parent = NewSpace();
        var a = parent.Map(2 * Page, Protection.ReadWrite, Sharing.Shared);
        var child = ForkOf(parent);

        child.Write(a, 41);
        parent.Write(a + Page, 42);

        Assert.Equal(41, parent.Read<int>(a));
        Assert.Equal(42, child.Read<int>(a + Page));
        Assert.Equal(parent.Inspect(a).Frame, child.Inspect(a).Frame);
        Assert.Equal(parent.Inspect(a + Page).Frame, child.Inspect(a + Page).Frame);
        Assert.Equal(2, parent.Inspect(a + Page).MapCount);
        AssertInvariants();
    }

    [Fact]
    public void AtomicAdd_FromParentAndChild_Accumulates()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite, Sharing.Shared);
        var child = ForkOf(parent);

        Assert.Equal(3, parent.AtomicAdd(a, 3));
        Assert.Equal(7, child.AtomicAdd(a, 4));
        Assert.Equal(10, parent.AtomicAdd(a, 3));
        Assert.Equal(10, child.Read<int>(a));
    }

    [Fact]
    public void SharedAndPrivate_InOneSpace_BehaveIndependentlyAcrossFork()
    {
        var parent = NewSpace();
        var shared = parent.Map(Page, Protection.ReadWrite, Sharing.Shared);
        var priv = parent.Map(Page, Protection.ReadWrite, Sharing.Private);
        parent.Write(shared, 1);
        parent.Write(priv, 1);
        var child = ForkOf(parent);

        child.Write(shared, 2);
        child.Write(priv, 2);

        Assert.Equal(2, parent.Read<int>(shared));
        Assert.Equal(1, parent.Read<int>(priv));
    }

    [Fact]
    public void ForkOfFork_AllThreeShare()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite, Sharing.Shared);
        var child = ForkOf(parent);
        var grandchild = ForkOf(child);

        grandchild.Write(a, 5);
        Assert.Equal(5, parent.Read<int>(a));
        Assert.Equal(5, child.Read<int>(a));
        parent.Write(a, 6);
        Assert.Equal(6, grandchild.Read<int>(a));
        Assert.Equal(3, parent.Inspect(a).MapCount);
    }

    [Fact]
    public void Discard_OnShared_ZapsPtes_ButKeepsTheData()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite, Sharing.Shared);
        Fill(space, a, 2, 0x7E);
        var free = Pool.FreePages;

        space.Discard(a, 2 * Page);

        Assert.Equal(PageState.NotPresent, space.Inspect(a).State);
        Assert.Equal(PageState.NotPresent, space.Inspect(a + Page).State);
        Assert.Equal(free, Pool.FreePages);
        AssertAllBytes(0x7E, ReadPages(space, a, 2));
        AssertInvariants();
    }

    [Fact]
    public void Discard_OnSharedInChild_ParentStillSeesTheData_AndSoDoesTheChild()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite, Sharing.Shared);
        parent.Write(a, 99);
        var child = ForkOf(parent);
        _ = child.Read<int>(a);

        child.Discard(a, Page);

        Assert.Equal(1, parent.Inspect(a).MapCount);
        Assert.Equal(99, parent.Read<int>(a));
        Assert.Equal(99, child.Read<int>(a));
        parent.Write(a, 100);
        Assert.Equal(100, child.Read<int>(a));
    }

    [Fact]
    public void Unmap_InChild_ParentKeepsTheData()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite, Sharing.Shared);
        parent.Write(a, 12);
        var child = ForkOf(parent);

        child.Unmap(a, Page);

        Assert.Equal(12, parent.Read<int>(a));
        Assert.Equal(PageState.Unmapped, child.Inspect(a).State);
    }

    [Fact]
    public void DisposingEveryMapper_ReturnsSharedFrames()
    {
        var parent = NewSpace();
        var a = parent.Map(3 * Page, Protection.ReadWrite, Sharing.Shared);
        Fill(parent, a, 3, 1);
        var child = ForkOf(parent);
        DisposeSpace(parent);

        AssertAllBytes(1, ReadPages(child, a, 3));
        DisposeSpace(child);

        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }
}
