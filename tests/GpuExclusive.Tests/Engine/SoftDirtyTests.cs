namespace GpuExclusive.Tests.Engine;

/// <summary>Soft-dirty tracking (<c>/proc/pid/clear_refs</c> "4"): clear, write-protect, and set again on the next write.</summary>
public sealed class SoftDirtyTests : EngineTest
{
    [Fact]
    public void ClearSoftDirty_ClearsTheBit_AndWriteProtectsPresentPages()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 1);
        Assert.True(space.Inspect(a).SoftDirty);

        space.ClearSoftDirty();

        for (ulong i = 0; i < 2; i++)
        {
            var info = space.Inspect(a + i * Page);
            Assert.Equal(PageState.Present, info.State);
            Assert.False(info.SoftDirty);
            Assert.False(info.Writable);
        }
        AssertAllBytes(1, ReadPages(space, a, 2));
    }

    [Fact]
    public void Write_AfterClearSoftDirty_SetsSoftDirtyAndWritable_OnTheSameFrame()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        var frame = space.Inspect(a).Frame;
        space.ClearSoftDirty();
        var free = Pool.FreePages;

        space.Write(a, 2);

        var info = space.Inspect(a);
        Assert.True(info.SoftDirty);
        Assert.True(info.Writable);
        Assert.Equal(frame, info.Frame);
        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(2, space.Read<int>(a));
    }

    [Fact]
    public void UnwrittenPages_StayClean_AfterClearSoftDirty()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 1);
        space.ClearSoftDirty();

        space.Write(a + Page, 2);
        _ = space.Read<int>(a + 2 * Page);

        Assert.False(space.Inspect(a).SoftDirty);
        Assert.True(space.Inspect(a + Page).SoftDirty);
        Assert.False(space.Inspect(a + 2 * Page).SoftDirty);
        Assert.False(space.Inspect(a + 2 * Page).Writable);
    }

    [Fact]
    public void AtomicAdd_AfterClearSoftDirty_SetsSoftDirty()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 40);
        space.ClearSoftDirty();

        Assert.Equal(42, space.AtomicAdd(a, 2));

        Assert.True(space.Inspect(a).SoftDirty);
    }

    [Fact]
    public void SpanWrite_AfterClearSoftDirty_SetsSoftDirtyOnEveryPageItTouches()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 1);
        space.ClearSoftDirty();

        space.Write(a + Page - 2, new byte[4]);

        Assert.True(space.Inspect(a).SoftDirty);
        Assert.True(space.Inspect(a + Page).SoftDirty);
        Assert.False(space.Inspect(a + 2 * Page).SoftDirty);
    }

    [Fact]
    public void FirstWrite_AfterClearSoftDirty_OfANewPage_IsSoftDirty()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        space.Write(a, 1);
        space.ClearSoftDirty();

        space.Write(a + Page, 1);
        var b = space.Map(Page, Protection.ReadWrite);
        space.Write(b, 1);

        Assert.True(space.Inspect(a + Page).SoftDirty);
        Assert.True(space.Inspect(b).SoftDirty);
        Assert.False(space.Inspect(a).SoftDirty);
    }

    [Fact]
    public void ClearSoftDirty_Twice_WithoutWrites_StaysClean()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        space.ClearSoftDirty();
        space.ClearSoftDirty();

        Assert.False(space.Inspect(a).SoftDirty);
        space.Write(a, 2);
        Assert.True(space.Inspect(a).SoftDirty);
    }

    [Fact]
    public void Write_AfterForkAndClearSoftDirty_StillCopiesOnWrite()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite);
        parent.Write(a, 1);
        var child = ForkOf(parent);
        parent.ClearSoftDirty();

        parent.Write(a, 2);

        Assert.Equal(1, child.Read<int>(a));
        Assert.NotEqual(parent.Inspect(a).Frame, child.Inspect(a).Frame);
        Assert.True(parent.Inspect(a).SoftDirty);
    }

    [Fact]
    public void Protect_ReadWrite_AfterClearSoftDirty_KeepsTrappingTheNextWrite()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        space.ClearSoftDirty();

        space.Protect(a, Page, Protection.Read);
        space.Protect(a, Page, Protection.ReadWrite);
        Assert.False(space.Inspect(a).SoftDirty);
        space.Write(a, 2);

        Assert.True(space.Inspect(a).SoftDirty);
    }

    [Fact]
    public void ClearSoftDirty_InParent_DoesNotTouchTheChild()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite);
        parent.Write(a, 1);
        var child = ForkOf(parent);
        child.Write(a, 2);

        parent.ClearSoftDirty();

        Assert.True(child.Inspect(a).SoftDirty);
        Assert.True(child.Inspect(a).Writable);
    }
}
