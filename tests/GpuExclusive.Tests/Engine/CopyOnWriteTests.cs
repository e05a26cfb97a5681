namespace GpuExclusive.Tests.Engine;

/// <summary>Private mappings across <see cref="AddressSpace.Fork"/>: shared read-only, copied on write in either direction, reused by the last mapper.</summary>
public sealed class CopyOnWriteTests : EngineTest
{
    private (AddressSpace Parent, AddressSpace Child, ulong Address) ForkWithPages(int pages, byte value)
    {
        var parent = NewSpace();
        var a = parent.Map((ulong)pages * Page, Protection.ReadWrite);
        Fill(parent, a, pages, value);
        return (parent, ForkOf(parent), a);
    }

    [Fact]
    public void Fork_SharesEveryFrameReadOnly_WithoutAllocating()
    {
        var parent = NewSpace();
        var a = parent.Map(3 * Page, Protection.ReadWrite);
        Fill(parent, a, 3, 0x42);
        var frames = Enumerable.Range(0, 3).Select(i => parent.Inspect(a + (ulong)i * Page).Frame).ToArray();
        var free = Pool.FreePages;

        var child = ForkOf(parent);

        Assert.Equal(free, Pool.FreePages);
        for (var i = 0; i < 3; i++)
        {
            var address = a + (ulong)i * Page;
            foreach (var side in new[] { parent.Inspect(address), child.Inspect(address) })
            {
                Assert.Equal(PageState.Present, side.State);
                Assert.False(side.Writable);
                Assert.Equal(frames[i], side.Frame);
                Assert.Equal(2, side.MapCount);
                Assert.Equal(2, side.RefCount);
            }
        }
        AssertInvariants();
    }

    [Fact]
    public void Fork_ChildPtesAreOld()
    {
        var (parent, child, a) = ForkWithPages(2, 1);

        Assert.False(child.Inspect(a).Young);
        Assert.False(child.Inspect(a + Page).Young);
        Assert.Equal(PageState.Present, parent.Inspect(a).State);
    }

    [Fact]
    public void Fork_ChildSeesTheParentsData_AtTheSameAddresses()
    {
        var (_, child, a) = ForkWithPages(2, 0x3C);

        AssertAllBytes(0x3C, ReadPages(child, a, 2));
    }

    [Fact]
    public void Read_AfterFork_DoesNotCopy()
    {
        var (parent, child, a) = ForkWithPages(2, 9);
        var free = Pool.FreePages;
        var frame = parent.Inspect(a).Frame;

        _ = parent.Read<int>(a);
        _ = child.Read<int>(a);

        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(frame, parent.Inspect(a).Frame);
        Assert.Equal(frame, child.Inspect(a).Frame);
        Assert.Equal(2, parent.Inspect(a).MapCount);
    }

    [Fact]
    public void Write_AfterFork_CopiesOnlyTheWriter()
    {
        var (parent, child, a) = ForkWithPages(2, 0x11);
        var shared = parent.Inspect(a).Frame;
        var free = Pool.FreePages;

        parent.Write(a + 8, 12345);

        var p = parent.Inspect(a);
        var c = child.Inspect(a);
        Assert.Equal(free - 1, Pool.FreePages);
        Assert.NotEqual(shared, p.Frame);
        Assert.Equal(shared, c.Frame);
        Assert.Equal(1, p.MapCount);
        Assert.Equal(1, c.MapCount);
        Assert.True(p.Writable);
        Assert.True(p.Dirty);
        Assert.Equal(12345, parent.Read<int>(a + 8));
        Assert.Equal(0x11111111, child.Read<int>(a + 8));
        // The copy carries the rest of the page.
        var copied = ReadPages(parent, a);
        AssertAllBytes(0x11, copied.AsSpan(0, 8));
        AssertAllBytes(0x11, copied.AsSpan(12));
        // The second page was not written: still shared.
        Assert.Equal(2, parent.Inspect(a + Page).MapCount);
        AssertInvariants();
    }

    [Fact]
    public void Write_InChildAfterFork_CopiesOnlyTheChild()
    {
        var (parent, child, a) = ForkWithPages(1, 0x22);
        var shared = parent.Inspect(a).Frame;

        child.Write(a, (byte)0x99);

        Assert.Equal(shared, parent.Inspect(a).Frame);
        Assert.NotEqual(shared, child.Inspect(a).Frame);
        Assert.Equal((byte)0x99, child.Read<byte>(a));
        Assert.Equal((byte)0x22, parent.Read<byte>(a));
        Assert.Equal(1, parent.Inspect(a).MapCount);
        Assert.Equal(1, child.Inspect(a).MapCount);
        AssertInvariants();
    }

    [Fact]
    public void Write_ByTheLastRemainingMapper_ReusesTheFrame()
    {
        var (parent, child, a) = ForkWithPages(1, 0x33);
        var shared = parent.Inspect(a).Frame;
        parent.Write(a, 1);
        var free = Pool.FreePages;

        child.Write(a, 2);

        var c = child.Inspect(a);
        Assert.Equal(shared, c.Frame);
        Assert.Equal(free, Pool.FreePages);
        Assert.True(c.Writable);
        Assert.Equal(1, c.MapCount);
        Assert.Equal(1, parent.Read<int>(a));
        Assert.Equal(2, child.Read<int>(a));
    }

    [Fact]
    public void Write_AfterTheOtherSideIsDisposed_ReusesTheFrame()
    {
        var (parent, child, a) = ForkWithPages(1, 0x44);
        var shared = parent.Inspect(a).Frame;
        DisposeSpace(child);
        var free = Pool.FreePages;

        parent.Write(a, 3);

        Assert.Equal(shared, parent.Inspect(a).Frame);
        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(3, parent.Read<int>(a));
    }

    [Fact]
    public void Write_AfterTheOtherSideUnmaps_ReusesTheFrame()
    {
        var (parent, child, a) = ForkWithPages(1, 0x45);
        var shared = parent.Inspect(a).Frame;
        parent.Unmap(a, Page);
        Assert.Equal(1, child.Inspect(a).MapCount);
        var free = Pool.FreePages;

        child.Write(a, 4);

        Assert.Equal(shared, child.Inspect(a).Frame);
        Assert.Equal(free, Pool.FreePages);
    }

    [Fact]
    public void AtomicAdd_AfterFork_BreaksCow()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite);
        parent.Write(a, 10);
        var child = ForkOf(parent);

        Assert.Equal(15, child.AtomicAdd(a, 5));
        Assert.Equal(11, parent.AtomicAdd(a, 1));

        Assert.Equal(15, child.Read<int>(a));
        Assert.Equal(11, parent.Read<int>(a));
        Assert.NotEqual(parent.Inspect(a).Frame, child.Inspect(a).Frame);
    }

    [Fact]
    public void SpanWrite_AfterFork_CopiesEveryPageItTouches()
    {
        var (parent, child, a) = ForkWithPages(3, 0x55);
        var data = new byte[(int)Page + 200];
        Array.Fill(data, (byte)0x66);

        parent.Write(a + Page - 100, data);

        Assert.Equal(1, parent.Inspect(a).MapCount);
        Assert.Equal(1, parent.Inspect(a + Page).MapCount);
        Assert.Equal(1, parent.Inspect(a + 2 * Page).MapCount);
        AssertAllBytes(0x55, ReadPages(child, a, 3));
        var mine = ReadPages(parent, a, 3);
        AssertAllBytes(0x55, mine.AsSpan(0, (int)Page - 100));
        AssertAllBytes(0x66, mine.AsSpan((int)Page - 100, data.Length));
        AssertAllBytes(0x55, mine.AsSpan((int)Page - 100 + data.Length));
    }

    [Fact]
    public void Fork_OfUntouchedPages_GivesIndependentZeroPages()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite);
        var child = ForkOf(parent);

        child.Write(a, 77);

        Assert.Equal(0, parent.Read<int>(a));
        Assert.Equal(77, child.Read<int>(a));
        Assert.NotEqual(parent.Inspect(a).Frame, child.Inspect(a).Frame);
    }

    [Fact]
    public void Fork_OfFork_SharesWithThree_AndEachWriterGetsItsOwnCopy()
    {
        var (parent, child, a) = ForkWithPages(1, 0x10);
        var grandchild = ForkOf(child);
        var shared = parent.Inspect(a).Frame;
        Assert.Equal(3, parent.Inspect(a).MapCount);
        Assert.Equal(3, grandchild.Inspect(a).RefCount);

        child.Write(a, 1);

        Assert.Equal(2, parent.Inspect(a).MapCount);
        Assert.Equal(shared, grandchild.Inspect(a).Frame);
        Assert.Equal(1, child.Inspect(a).MapCount);

        grandchild.Write(a, 2);
        parent.Write(a, 3);

        Assert.Equal(shared, parent.Inspect(a).Frame); // last mapper reuses
        Assert.Equal(3, parent.Read<int>(a));
        Assert.Equal(1, child.Read<int>(a));
        Assert.Equal(2, grandchild.Read<int>(a));
        AssertInvariants();
    }

    [Fact]
    public void Fork_AfterACowBreak_SharesTheNewCopy()
    {
        var (parent, child, a) = ForkWithPages(1, 0x01);
        parent.Write(a, 5);
        var second = ForkOf(parent);

        Assert.Equal(parent.Inspect(a).Frame, second.Inspect(a).Frame);
        Assert.Equal(2, parent.Inspect(a).MapCount);
        Assert.Equal(1, child.Inspect(a).MapCount);
        Assert.Equal(5, second.Read<int>(a));

        second.Write(a, 6);
        Assert.Equal(5, parent.Read<int>(a));
    }

    [Fact]
    public void Fork_OfReadOnlyPrivateMapping_SharesData_AndWritesStillFault()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite);
        parent.Write(a, 8);
        parent.Protect(a, Page, Protection.Read);
        var child = ForkOf(parent);

        Assert.Equal(8, child.Read<int>(a));
        var e = Assert.Throws<MemoryAccessException>(() => child.Write(a, 9));
        Assert.True(e.IsWrite);
        Assert.Equal(parent.Inspect(a).Frame, child.Inspect(a).Frame);
    }
}
