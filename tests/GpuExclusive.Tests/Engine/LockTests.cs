namespace GpuExclusive.Tests.Engine;

/// <summary><see cref="AddressSpace.Lock"/>/<see cref="AddressSpace.Unlock"/> (mlock/munlock): populate, refuse discard, all or nothing.</summary>
public sealed class LockTests : EngineTest
{
    public LockTests() : base(capacityPages: 8) { }

    [Fact]
    public void Lock_PopulatesEveryPage()
    {
        var space = NewSpace();
        var a = space.Map(4 * Page, Protection.ReadWrite);
        var free = Pool.FreePages;

        space.Lock(a, 4 * Page);

        Assert.Equal(free - 4, Pool.FreePages);
        for (ulong i = 0; i < 4; i++)
            Assert.Equal(PageState.Present, space.Inspect(a + i * Page).State);
        AssertAllBytes(0, ReadPages(space, a, 4));
        Assert.Equal(free - 4, Pool.FreePages);
    }

    [Fact]
    public void Lock_KeepsExistingData_AndFrames()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        space.Write(a, 17);
        var frame = space.Inspect(a).Frame;

        space.Lock(a, 2 * Page);

        Assert.Equal(frame, space.Inspect(a).Frame);
        Assert.Equal(17, space.Read<int>(a));
        space.Write(a + Page, 18);
        Assert.Equal(18, space.Read<int>(a + Page));
    }

    [Fact]
    public void Lock_ReadOnlyMapping_PopulatesToo()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.Read);

        space.Lock(a, 2 * Page);

        Assert.Equal(PageState.Present, space.Inspect(a + Page).State);
        Assert.Equal(0, space.Read<int>(a + Page));
    }

    [Fact]
    public void Lock_WhenThePoolCannotHoldIt_ThrowsInsufficientMemory_AndChangesNothing()
    {
        var space = NewSpace();
        var a = space.Map(10 * Page, Protection.ReadWrite);
        space.Write(a, 5);
        var free = Pool.FreePages;

        Assert.Throws<InsufficientMemoryException>(() => space.Lock(a, 10 * Page));

        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(5, space.Read<int>(a));
        for (ulong i = 1; i < 10; i++)
            Assert.Equal(PageState.NotPresent, space.Inspect(a + i * Page).State);
        // Not locked: Discard is allowed.
        space.Discard(a, 10 * Page);
        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    [Fact]
    public void Discard_OfLockedRange_Throws_UntilUnlocked()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        space.Lock(a, 2 * Page);
        space.Write(a, 3);

        Assert.Throws<InvalidOperationException>(() => space.Discard(a, Page));
        Assert.Equal(3, space.Read<int>(a));

        space.Unlock(a, 2 * Page);
        space.Discard(a, 2 * Page);

        Assert.Equal(0, space.Read<int>(a));
    }

    [Fact]
    public void Unlock_KeepsPagesPresent_AndData()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Lock(a, Page);
        space.Write(a, 4);

        space.Unlock(a, Page);

        Assert.Equal(PageState.Present, space.Inspect(a).State);
        Assert.Equal(4, space.Read<int>(a));
    }

    [Fact]
    public void Lock_PartOfAMapping_LocksOnlyThatPart()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 0x19);

        space.Lock(a + Page, Page);

        Assert.Throws<InvalidOperationException>(() => space.Discard(a, 3 * Page));
        AssertAllBytes(0x19, ReadPages(space, a, 3)); // the refused discard zeroed nothing
        space.Discard(a, Page);
        space.Discard(a + 2 * Page, Page);
        Assert.Throws<InvalidOperationException>(() => space.Discard(a + Page, Page));
        AssertAllBytes(0, ReadPages(space, a));
        AssertAllBytes(0x19, ReadPages(space, a + Page));
    }

    [Fact]
    public void Unlock_PartOfALockedMapping_UnlocksOnlyThatPart()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        space.Lock(a, 3 * Page);

        space.Unlock(a + 2 * Page, Page);

        space.Discard(a + 2 * Page, Page);
        Assert.Throws<InvalidOperationException>(() => space.Discard(a + Page, Page));
        Assert.Throws<InvalidOperationException>(() => space.Discard(a, Page));
    }

    [Fact]
    public void Lock_Twice_IsHarmless_AndOneUnlockUndoesIt()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Lock(a, Page);
        var free = Pool.FreePages;

        space.Lock(a, Page);
        Assert.Equal(free, Pool.FreePages);

        space.Unlock(a, Page); // mlock does not nest
        space.Discard(a, Page);
        Assert.Equal(free + 1, Pool.FreePages);
    }

    [Fact]
    public void LockAndUnlock_OverAHole_ThrowArgument_AndChangeNothing()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        space.Unmap(a + Page, Page);
        var free = Pool.FreePages;

        Assert.ThrowsAny<ArgumentException>(() => space.Lock(a, 3 * Page));
        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(PageState.NotPresent, space.Inspect(a).State);
        space.Discard(a, Page); // page 0 was not locked

        space.Lock(a, Page);
        Assert.ThrowsAny<ArgumentException>(() => space.Unlock(a, 3 * Page));
        Assert.Throws<InvalidOperationException>(() => space.Discard(a, Page)); // still locked
    }

    [Fact]
    public void UnmapOfALockedRange_IsAllowed_AndFreesTheFrames()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        space.Lock(a, 2 * Page);

        space.Unmap(a, 2 * Page);

        Assert.Equal(Pool.Capacity, Pool.FreePages);
        Assert.Equal(PageState.Unmapped, space.Inspect(a).State);
    }
}
