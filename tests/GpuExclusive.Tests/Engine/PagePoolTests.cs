namespace GpuExclusive.Tests.Engine;

/// <summary>The frame pool: capacity, free count, exhaustion with nothing half-done, disposal rules.</summary>
public sealed class PagePoolTests : EngineTest
{
    public PagePoolTests() : base(capacityPages: 4) { }

    [Fact]
    public void NewPool_HasEveryFrameFree()
    {
        var pool = CreatePool(17);

        Assert.Equal(17, pool.Capacity);
        Assert.Equal(17, pool.FreePages);
        Assert.Equal(4096, PagePool.PageSize);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(long.MinValue)]
    public void Constructor_NonPositiveCapacity_Throws(long capacity)
    {
        Assert.ThrowsAny<ArgumentException>(() => new PagePool(capacity));
    }

    [Fact]
    public void Fault_TakesOneFrame_AndDisposeGivesItBack()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);

        space.Write(a, 1);
        Assert.Equal(Pool.Capacity - 1, Pool.FreePages);
        space.Write(a + Page, 2);
        Assert.Equal(Pool.Capacity - 2, Pool.FreePages);

        DisposeSpace(space);
        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    [Fact]
    public void Write_WhenPoolExhausted_ThrowsInsufficientMemory_AndChangesNothing()
    {
        var space = NewSpace();
        var a = space.Map(5 * Page, Protection.ReadWrite);
        for (var i = 0; i < 4; i++)
            space.Write(a + (ulong)i * Page, 100 + i);
        Assert.Equal(0, Pool.FreePages);

        var last = a + 4 * Page;
        Assert.Throws<InsufficientMemoryException>(() => space.Write(last, 7));

        Assert.Equal(0, Pool.FreePages);
        var info = space.Inspect(last);
        Assert.Equal(PageState.NotPresent, info.State);
        Assert.Equal(-1, info.Frame);
        for (var i = 0; i < 4; i++)
            Assert.Equal(100 + i, space.Read<int>(a + (ulong)i * Page));
    }

    [Fact]
    public void ReadAndAtomicAdd_WhenPoolExhausted_ThrowInsufficientMemory()
    {
        var space = NewSpace();
        var a = space.Map(5 * Page, Protection.ReadWrite);
        space.Lock(a, 4 * Page);
        var last = a + 4 * Page;

        Assert.Throws<InsufficientMemoryException>(() => space.Read<int>(last));
        Assert.Throws<InsufficientMemoryException>(() => space.AtomicAdd(last, 1));
        Assert.Equal(PageState.NotPresent, space.Inspect(last).State);
    }

    [Fact]
    public void Fault_AfterFramesReturn_Succeeds()
    {
        var space = NewSpace();
        var a = space.Map(5 * Page, Protection.ReadWrite);
        Fill(space, a, 4, 0x11);
        Assert.Throws<InsufficientMemoryException>(() => space.Write(a + 4 * Page, 1));

        space.Discard(a, Page);
        space.Write(a + 4 * Page, 1);

        Assert.Equal(1, space.Read<int>(a + 4 * Page));
        Assert.Equal(0, Pool.FreePages);
    }

    [Fact]
    public void CowBreak_WhenPoolExhausted_Throws_AndKeepsBothSidesSharing()
    {
        var parent = NewSpace();
        var a = parent.Map(4 * Page, Protection.ReadWrite);
        Fill(parent, a, 4, 0x5A);
        var child = ForkOf(parent);
        var before = parent.Inspect(a);

        Assert.Throws<InsufficientMemoryException>(() => parent.Write(a, 1));
        Assert.Throws<InsufficientMemoryException>(() => child.AtomicAdd(a, 1));

        Assert.Equal(before, parent.Inspect(a));
        Assert.Equal(before.Frame, child.Inspect(a).Frame);
        Assert.Equal(2, parent.Inspect(a).MapCount);
        AssertAllBytes(0x5A, ReadPages(parent, a));
        AssertAllBytes(0x5A, ReadPages(child, a));
        AssertInvariants();
    }

    [Fact]
    public void Dispose_WithFramesInUse_Throws()
    {
        var pool = new PagePool(2);
        var space = new AddressSpace(pool);
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);

        Assert.Throws<InvalidOperationException>(pool.Dispose);

        // The failed disposal left the pool usable: the space still works and can be torn down.
        Assert.Equal(1, space.Read<int>(a));
        space.Dispose();
        Assert.Equal(pool.Capacity, pool.FreePages);
        pool.Dispose();
    }
}
