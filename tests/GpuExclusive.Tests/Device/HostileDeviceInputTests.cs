using GpuExclusive.Diagnostics;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// Hostile input to the device layer (issue 6, item 3): calls on disposed objects, pool exhaustion in the middle of a
/// grant or a batch, addresses at the top of the space. After every error nothing has changed and the invariants hold.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class HostileDeviceInputTests(CpuAcceleratorFixture fixture) : IClassFixture<CpuAcceleratorFixture>
{
    private const ulong Page = PagePool.PageSize;

    [Fact]
    public void EveryMirrorMethod_AfterTheMirrorIsDisposed_ThrowsObjectDisposed()
    {
        using var pool = new PagePool(16);
        using var space = new AddressSpace(pool);
        var address = space.Map(Page, Protection.ReadWrite);
        var mirror = fixture.Device.Mirror(space);
        mirror.Dispose();

        AssertEveryMirrorCallThrows<ObjectDisposedException>(mirror, address);
        mirror.Dispose(); // a second Dispose is harmless
    }

    [Fact]
    public void EveryMirrorMethod_AfterItsSpaceIsDisposed_ThrowsObjectDisposed()
    {
        using var pool = new PagePool(16);
        var space = new AddressSpace(pool);
        var address = space.Map(Page, Protection.ReadWrite);
        using var mirror = fixture.Device.Mirror(space);
        mirror.MakeExclusive(address, Page);
        space.Dispose();

        AssertEveryMirrorCallThrows<ObjectDisposedException>(mirror, address);
        Assert.Equal(pool.Capacity, pool.FreePages);
    }

    [Fact]
    public void MirrorAndOpen_OnADisposedDevice_ThrowObjectDisposed()
    {
        using var pool = new PagePool(16);
        using var space = new AddressSpace(pool);
        var address = space.Map(Page, Protection.ReadWrite);
        var device = fixture.Open();
        var mirror = device.Mirror(space);
        device.Dispose();

        Assert.Throws<ObjectDisposedException>(() => device.Mirror(space));
        AssertEveryMirrorCallThrows<ObjectDisposedException>(mirror, address);
        space.Write(address, 5); // the space is still the CPU's
        Assert.Equal(5, space.Read<int>(address));
    }

    [Fact]
    public void MakeExclusive_WhenThePoolCannotHoldTheRange_ThrowsInsufficientMemory_AndChangesNothing()
    {
        using var pool = new PagePool(8);
        using var space = new AddressSpace(pool);
        using var mirror = fixture.Device.Mirror(space);
        var range = space.Map(16 * Page, Protection.ReadWrite);
        space.Write(range, 42); // one page present, fifteen would need frames the pool does not have
        var before = Enumerable.Range(0, 16).Select(p => space.Inspect(range + ((ulong)p * Page))).ToArray();
        var free = pool.FreePages;

        Assert.Throws<InsufficientMemoryException>(() => mirror.MakeExclusive(range, 16 * Page));

        Assert.Equal(free, pool.FreePages);
        Assert.Equal(before, Enumerable.Range(0, 16).Select(p => space.Inspect(range + ((ulong)p * Page))).ToArray());
        Assert.Equal(0, mirror.CountExclusive(range, 16 * Page));
        InvariantChecker.Check(pool);

        // The space and the mirror stay usable: a range that fits is granted.
        Assert.Equal(4, mirror.MakeExclusive(range, 4 * Page));
        Assert.Equal(42, space.Read<int>(range));
        InvariantChecker.Check(pool);
    }

    [Fact]
    public void Run_WhenThePoolIsExhausted_ThrowsInsufficientMemory_AndRunsAgainOnceFramesAreBack()
    {
        using var pool = new PagePool(4);
        using var space = new AddressSpace(pool);
        using var mirror = fixture.Device.Mirror(space);
        var filler = space.Map(4 * Page, Protection.ReadWrite);
        for (var p = 0UL; p < 4; p++)
        {
            space.Write(filler + (p * Page), 1); // every frame in use
        }

        var target = space.Map(Page, Protection.ReadWrite);
        AtomicOp[] ops = [new(target, AtomicKind.Add, 3)];

        Assert.Throws<InsufficientMemoryException>(() => mirror.Run(ops));
        Assert.Equal(PageState.NotPresent, space.Inspect(target).State);
        InvariantChecker.Check(pool);

        space.Discard(filler, Page);
        var result = mirror.Run(ops);

        Assert.Equal(1, result.Completed);
        Assert.Equal(3, space.Read<int>(target));
        InvariantChecker.Check(pool);
    }

    [Theory]
    [InlineData(0x7FFF_FFFF_F000UL)]          // the last page of the 47-bit space: valid, but unmapped
    [InlineData(0x1000UL)]                    // low memory, never mapped
    public void MakeExclusive_OnUnmappedPagesAnywhere_ThrowsMemoryAccess(ulong address)
    {
        using var pool = new PagePool(4);
        using var space = new AddressSpace(pool);
        using var mirror = fixture.Device.Mirror(space);

        var error = Assert.Throws<MemoryAccessException>(() => mirror.MakeExclusive(address, Page));

        Assert.Equal(address, error.Address);
        Assert.Equal(pool.Capacity, pool.FreePages);
    }

    [Theory]
    [InlineData(0x8000_0000_0000UL)]          // just past the 47-bit space
    [InlineData(0xFFFF_FFFF_FFFF_F000UL)]     // the top of the 64-bit range
    public void MakeExclusiveAndRun_BeyondTheAddressSpace_ThrowArgument(ulong address)
    {
        using var pool = new PagePool(4);
        using var space = new AddressSpace(pool);
        using var mirror = fixture.Device.Mirror(space);

        Assert.ThrowsAny<ArgumentException>(() => mirror.MakeExclusive(address, Page));
        Assert.ThrowsAny<ArgumentException>(() => mirror.Run([new AtomicOp(address, AtomicKind.Add, 1)]));
        Assert.ThrowsAny<ArgumentException>(() => mirror.CountExclusive(address, Page));
    }

    [Fact]
    public void DeviceReadAndWrite_RunningPastTheEndOfTheAddressSpace_ThrowArgument()
    {
        using var pool = new PagePool(4);
        using var space = new AddressSpace(pool);
        using var mirror = fixture.Device.Mirror(space);
        var buffer = new byte[16];

        Assert.ThrowsAny<ArgumentException>(() => mirror.Read(ulong.MaxValue - 4, buffer));
        Assert.ThrowsAny<ArgumentException>(() => mirror.Write(ulong.MaxValue - 4, buffer));
    }

    private static void AssertEveryMirrorCallThrows<TException>(DeviceMirror mirror, ulong address)
        where TException : Exception
    {
        var buffer = new byte[4];
        Assert.Throws<TException>(() => mirror.MakeExclusive(address, Page));
        Assert.Throws<TException>(() => mirror.CountExclusive(address, Page));
        Assert.Throws<TException>(() => mirror.Run([new AtomicOp(address, AtomicKind.Add, 1)]));
        Assert.Throws<TException>(() => mirror.Read(address, buffer));
        Assert.Throws<TException>(() => mirror.Write(address, buffer));
    }
}
