namespace GpuExclusive.Tests.Engine;

/// <summary><see cref="AddressSpace.Protect"/> (mprotect) and protection-faults: forbidden accesses throw and change nothing.</summary>
public sealed class ProtectTests : EngineTest
{
    [Fact]
    public void Write_ToReadOnlyMapping_Throws_WithAddressAndIsWrite_AndChangesNothing()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a + 16, 7);
        space.Protect(a, Page, Protection.Read);
        var before = space.Inspect(a);

        var e = Assert.Throws<MemoryAccessException>(() => space.Write(a + 16, 8));

        Assert.Equal(a + 16, e.Address);
        Assert.True(e.IsWrite);
        Assert.Equal(7, space.Read<int>(a + 16));
        Assert.Equal(before, space.Inspect(a));
    }

    [Fact]
    public void Protect_ReadOnly_WriteProtectsPresentPtes()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        Assert.True(space.Inspect(a).Writable);

        space.Protect(a, Page, Protection.Read);

        Assert.False(space.Inspect(a).Writable);
        Assert.Equal(PageState.Present, space.Inspect(a).State);
    }

    [Fact]
    public void AtomicAddAndSpanWrite_ToReadOnlyMapping_Throw_AndChangeNothing()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 3);
        space.Protect(a, 2 * Page, Protection.Read);

        var atomic = Assert.Throws<MemoryAccessException>(() => space.AtomicAdd(a + 8, 1));
        var span = Assert.Throws<MemoryAccessException>(() => space.Write(a + 10, new byte[] { 9, 9 }));

        Assert.True(atomic.IsWrite);
        Assert.Equal(a + 8, atomic.Address);
        Assert.True(span.IsWrite);
        Assert.InRange(span.Address, a, a + Page - 1);
        AssertAllBytes(3, ReadPages(space, a, 2));
    }

    [Fact]
    public void Write_ToUntouchedReadOnlyMapping_Throws_WithoutAllocating()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.Read);
        var free = Pool.FreePages;

        Assert.Throws<MemoryAccessException>(() => space.Write(a, 1));

        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(PageState.NotPresent, space.Inspect(a).State);
        Assert.Equal(0, space.Read<int>(a));
    }

    [Fact]
    public void ProtectNone_MakesEveryAccessThrow_WithTheRightKind()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        space.Write(a, 1);
        space.Protect(a, 2 * Page, Protection.None);
        var free = Pool.FreePages;

        var read = Assert.Throws<MemoryAccessException>(() => space.Read<int>(a + 4));
        var write = Assert.Throws<MemoryAccessException>(() => space.Write(a + 4, 1));
        var atomic = Assert.Throws<MemoryAccessException>(() => space.AtomicAdd(a + Page, 1));
        var spanRead = Assert.Throws<MemoryAccessException>(() => space.Read(a, new byte[8]));

        Assert.False(read.IsWrite);
        Assert.Equal(a + 4, read.Address);
        Assert.True(write.IsWrite);
        Assert.True(atomic.IsWrite);
        Assert.Equal(a + Page, atomic.Address);
        Assert.False(spanRead.IsWrite);
        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(PageState.NotPresent, space.Inspect(a + Page).State);
    }

    [Fact]
    public void ProtectNone_ThenReadWrite_KeepsTheData()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 0x5F);
        var frame = space.Inspect(a).Frame;

        space.Protect(a, 2 * Page, Protection.None);
        space.Protect(a, 2 * Page, Protection.ReadWrite);

        AssertAllBytes(0x5F, ReadPages(space, a, 2));
        space.Write(a, 0);
        Assert.Equal(frame, space.Inspect(a).Frame);
        Assert.Equal(0, space.Read<int>(a));
    }

    [Fact]
    public void MapWriteOnly_IsReadableToo()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.Write);

        space.Write(a, 21);

        Assert.Equal(21, space.Read<int>(a));
    }

    [Fact]
    public void ProtectReadWrite_AfterFork_DoesNotMakeASharedFrameWritable()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite);
        parent.Write(a, 1);
        var child = ForkOf(parent);

        parent.Protect(a, Page, Protection.Read);
        parent.Protect(a, Page, Protection.ReadWrite);
        parent.Write(a, 2);

        Assert.Equal(1, child.Read<int>(a));
        Assert.Equal(2, parent.Read<int>(a));
        Assert.NotEqual(parent.Inspect(a).Frame, child.Inspect(a).Frame);
    }

    [Fact]
    public void Protect_OverAHole_ThrowsArgument_AndChangesNothing()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        space.Write(a, 1);
        space.Unmap(a + Page, Page);

        Assert.ThrowsAny<ArgumentException>(() => space.Protect(a, 3 * Page, Protection.Read));

        Assert.True(space.Inspect(a).Writable);
        space.Write(a, 2);
        space.Write(a + 2 * Page, 3);
        Assert.Equal(2, space.Read<int>(a));
    }

    [Fact]
    public void Protect_OfUnmappedRange_ThrowsArgument()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Unmap(a, Page);

        Assert.ThrowsAny<ArgumentException>(() => space.Protect(a, Page, Protection.Read));
    }

    [Fact]
    public void ProtectReadOnly_OnSharedMapping_StopsWritesInThisSpaceOnly()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite, Sharing.Shared);
        parent.Write(a, 1);
        var child = ForkOf(parent);

        parent.Protect(a, Page, Protection.Read);

        Assert.Throws<MemoryAccessException>(() => parent.Write(a, 2));
        child.Write(a, 3);
        Assert.Equal(3, parent.Read<int>(a));
    }

    [Fact]
    public void SpanWrite_RunningIntoAReadOnlyPage_WritesNothingAtAll()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 0x0F);
        space.Protect(a + Page, Page, Protection.Read);
        var data = new byte[200];
        Array.Fill(data, (byte)0xF0);

        var e = Assert.Throws<MemoryAccessException>(() => space.Write(a + Page - 100, data));

        Assert.True(e.IsWrite);
        Assert.InRange(e.Address, a + Page, a + 2 * Page - 1);
        AssertAllBytes(0x0F, ReadPages(space, a, 2));
    }
}
