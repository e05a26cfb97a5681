namespace GpuExclusive.Tests.Engine;

/// <summary>Every malformed argument of the public contract (docs/architecture.md) is an <see cref="ArgumentException"/> and changes nothing; unmapped access is a <see cref="MemoryAccessException"/>.</summary>
public sealed class BadInputTests : EngineTest
{
    private const ulong Top = ulong.MaxValue - (PagePool.PageSize - 1); // the last page-aligned address

    /// <summary>Lengths no operation accepts: zero, or not whole pages.</summary>
    private static readonly ulong[] BadLengthValues = [0UL, 1UL, 4095UL, 4097UL, PagePool.PageSize * 2UL - 1, PagePool.PageSize + 512UL];

    public static TheoryData<ulong> BadLengths() => new(BadLengthValues);

    /// <summary>The range operations, by name, so one theory covers each.</summary>
    public static TheoryData<string> RangeOperations() => new()
    {
        nameof(AddressSpace.Unmap), nameof(AddressSpace.Protect), nameof(AddressSpace.Lock),
        nameof(AddressSpace.Unlock), nameof(AddressSpace.Discard),
    };

    private static void RunRange(AddressSpace space, string operation, ulong address, ulong length)
    {
        switch (operation)
        {
            case nameof(AddressSpace.Unmap): space.Unmap(address, length); break;
            case nameof(AddressSpace.Protect): space.Protect(address, length, Protection.Read); break;
            case nameof(AddressSpace.Lock): space.Lock(address, length); break;
            case nameof(AddressSpace.Unlock): space.Unlock(address, length); break;
            case nameof(AddressSpace.Discard): space.Discard(address, length); break;
            default: throw new ArgumentOutOfRangeException(nameof(operation), operation, null);
        }
    }

    [Theory]
    [MemberData(nameof(BadLengths))]
    public void Map_BadLength_Throws_AndMapsNothing(ulong length)
    {
        var space = NewSpace();

        Assert.ThrowsAny<ArgumentException>(() => space.Map(length, Protection.ReadWrite));

        // The space still maps normally afterwards.
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        Assert.Equal(1, space.Read<int>(a));
    }

    [Theory]
    [InlineData(Top)]
    [InlineData(1UL << 63)]
    public void Map_LargerThanTheAddressSpace_IsRefused(ulong length)
    {
        var space = NewSpace();

        // Linux answers ENOMEM; the contract allows a bad-argument answer too. Either way nothing is mapped.
        var e = Record.Exception(() => space.Map(length, Protection.ReadWrite));

        Assert.True(e is ArgumentException or InsufficientMemoryException, $"expected a refusal, got {e?.GetType().Name ?? "success"}");
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
    }

    [Fact]
    public void Map_UndefinedProtectionOrSharing_Throws()
    {
        var space = NewSpace();

        Assert.ThrowsAny<ArgumentException>(() => space.Map(Page, (Protection)8));
        Assert.ThrowsAny<ArgumentException>(() => space.Map(Page, Protection.ReadWrite, (Sharing)2));
    }

    [Fact]
    public void Protect_UndefinedProtection_Throws_AndChangesNothing()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);

        Assert.ThrowsAny<ArgumentException>(() => space.Protect(a, Page, (Protection)12));

        space.Write(a, 1);
    }

    [Theory]
    [MemberData(nameof(RangeOperations))]
    public void RangeOperation_MisalignedAddress_Throws_AndChangesNothing(string operation)
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        space.Write(a, 11);

        foreach (var offset in new ulong[] { 1, 8, Page / 2, Page - 1 })
            Assert.ThrowsAny<ArgumentException>(() => RunRange(space, operation, a + offset, Page));

        var info = space.Inspect(a);
        Assert.Equal(PageState.Present, info.State);
        Assert.True(info.Writable);
        Assert.Equal(11, space.Read<int>(a));
        space.Discard(a, 2 * Page); // not locked by the refused Lock
    }

    [Theory]
    [MemberData(nameof(RangeOperations))]
    public void RangeOperation_BadLength_Throws_AndChangesNothing(string operation)
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        space.Write(a, 12);

        foreach (var length in BadLengthValues.Append(Top)) // Top: a + Top wraps past the end
            Assert.ThrowsAny<ArgumentException>(() => RunRange(space, operation, a, length));

        Assert.Equal(PageState.Present, space.Inspect(a).State);
        Assert.True(space.Inspect(a).Writable);
        Assert.Equal(12, space.Read<int>(a));
        space.Discard(a, 2 * Page);
    }

    [Theory]
    [MemberData(nameof(RangeOperations))]
    public void RangeOperation_RangeThatOverflows_Throws(string operation)
    {
        var space = NewSpace();

        Assert.ThrowsAny<ArgumentException>(() => RunRange(space, operation, Top, 2 * Page));
        Assert.ThrowsAny<ArgumentException>(() => RunRange(space, operation, Top - Page, Top));
    }

    [Theory]
    [InlineData(4094UL)]
    [InlineData(4093UL)]
    [InlineData(4095UL)]
    public void ReadAndWriteOfInt_CrossingAPage_Throw_AndChangeNothing(ulong offset)
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        var free = Pool.FreePages;

        Assert.ThrowsAny<ArgumentException>(() => space.Read<int>(a + offset));
        Assert.ThrowsAny<ArgumentException>(() => space.Write(a + offset, -1));

        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(PageState.NotPresent, space.Inspect(a).State);
        Assert.Equal(PageState.NotPresent, space.Inspect(a + Page).State);
    }

    [Fact]
    public void WriteOfLong_CrossingAPage_Throws_AndLeavesBothPagesAlone()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 0x31);

        Assert.ThrowsAny<ArgumentException>(() => space.Write(a + Page - 4, -1L));
        Assert.ThrowsAny<ArgumentException>(() => space.Read<Guid>(a + Page - 8));

        AssertAllBytes(0x31, ReadPages(space, a, 2));
    }

    [Theory]
    [InlineData(1UL)]
    [InlineData(2UL)]
    [InlineData(3UL)]
    [InlineData(4094UL)]
    public void AtomicAdd_MisalignedAddress_Throws_AndChangesNothing(ulong offset)
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 1, 0);

        Assert.ThrowsAny<ArgumentException>(() => space.AtomicAdd(a + offset, 1));

        AssertAllBytes(0, ReadPages(space, a));
        Assert.Equal(PageState.NotPresent, space.Inspect(a + Page).State);
    }

    [Fact]
    public void Access_ToUnmappedAddress_ThrowsMemoryAccess_WithAddressAndKind()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Unmap(a, Page);
        var free = Pool.FreePages;

        var read = Assert.Throws<MemoryAccessException>(() => space.Read<long>(a + 24));
        var write = Assert.Throws<MemoryAccessException>(() => space.Write(a + 32, 1));
        var atomic = Assert.Throws<MemoryAccessException>(() => space.AtomicAdd(a + 40, 1));
        var spanRead = Assert.Throws<MemoryAccessException>(() => space.Read(a, new byte[16]));
        var spanWrite = Assert.Throws<MemoryAccessException>(() => space.Write(a, new byte[16]));
        var nullPage = Assert.Throws<MemoryAccessException>(() => space.Read<int>(0));

        Assert.Equal((a + 24, false), (read.Address, read.IsWrite));
        Assert.Equal((a + 32, true), (write.Address, write.IsWrite));
        Assert.Equal((a + 40, true), (atomic.Address, atomic.IsWrite));
        Assert.Equal((a, false), (spanRead.Address, spanRead.IsWrite));
        Assert.Equal((a, true), (spanWrite.Address, spanWrite.IsWrite));
        Assert.Equal((0UL, false), (nullPage.Address, nullPage.IsWrite));
        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(PageState.Unmapped, space.Inspect(a).State);
    }

    [Fact]
    public void SpanRead_RunningOffTheEndOfAMapping_ThrowsMemoryAccess_InTheHole()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        space.Unmap(a + Page, Page);

        var e = Assert.Throws<MemoryAccessException>(() => space.Read(a + Page - 8, new byte[16]));

        Assert.False(e.IsWrite);
        Assert.InRange(e.Address, a + Page, a + Page + 7);
    }

    [Fact]
    public void AddressSpace_NullPool_Throws()
    {
        Assert.ThrowsAny<ArgumentException>(() => new AddressSpace(null!));
    }

    [Fact]
    public void Notifiers_Null_Throw()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);

        Assert.ThrowsAny<ArgumentException>(() => space.RegisterNotifier(null!));
        Assert.ThrowsAny<ArgumentException>(() => space.InsertIntervalNotifier(null!, a, Page));
    }

    [Fact]
    public void SpanWrite_RunningOffTheEndOfAMapping_WritesNothingAtAll()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 1, 0x0E);
        space.Unmap(a + Page, Page);

        var e = Assert.Throws<MemoryAccessException>(() => space.Write(a + Page - 8, new byte[16]));

        Assert.True(e.IsWrite);
        Assert.InRange(e.Address, a + Page, a + Page + 7);
        AssertAllBytes(0x0E, ReadPages(space, a));
    }

    [Theory]
    [InlineData(1UL << 47)]
    [InlineData(1UL << 48)]
    [InlineData(1UL << 63)]
    public void Access_AtAMappedAddressPlusAHighBit_FaultsThere_AndTouchesNothingBelow(ulong highBit)
    {
        // The page table walks 9 bits a level and would ignore bits 48..63 if nothing stopped it there.
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 7);
        var alias = a | highBit;

        Assert.Equal(alias, Assert.Throws<MemoryAccessException>(() => space.Read<int>(alias)).Address);
        Assert.Equal(alias, Assert.Throws<MemoryAccessException>(() => space.Write(alias, 8)).Address);
        Assert.Equal(alias, Assert.Throws<MemoryAccessException>(() => space.AtomicAdd(alias, 1)).Address);
        Assert.Equal(alias, Assert.Throws<MemoryAccessException>(() => space.Read(alias, new byte[8])).Address);
        Assert.Equal(alias, Assert.Throws<MemoryAccessException>(() => space.Write(alias, new byte[8])).Address);

        Assert.Equal(7, space.Read<int>(a));
    }
}
