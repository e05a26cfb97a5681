using System.Runtime.InteropServices;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// Device reads and writes mirror the CPU PTE without exclusivity (docs/architecture.md, "the revocation path"), and every bad input is refused with
/// the documented error and no effect (docs/architecture.md, "the grant path" and "the public surface and errors").
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    [DeviceFact]
    public void DeviceReadAndWrite_OfUnmappedAddress_AreNotMapped()
    {
        var buffer = Space.Map(2 * Page, Protection.ReadWrite);
        Space.Unmap(buffer + Page, Page);

        Assert.Equal(DeviceStatus.NotMapped, Mirror.Read(buffer + Page, new byte[8]));
        Assert.Equal(DeviceStatus.NotMapped, Mirror.Write(buffer + Page, new byte[8]));
        Assert.Equal(DeviceStatus.NotMapped, Mirror.Read(buffer + Page - 4, new byte[8])); // crossing into the hole

        AssertCleanTeardown();
    }

    [DeviceFact]
    public void DeviceWrite_ToReadOnlyMapping_IsPermissionDenied_AndWritesNothing()
    {
        var buffer = Space.Map(Page, Protection.Read);

        Assert.Equal(DeviceStatus.PermissionDenied, Mirror.Write(buffer, MemoryMarshal.AsBytes<int>([42])));

        var seen = new int[1];
        Assert.Equal(DeviceStatus.Ok, Mirror.Read(buffer, MemoryMarshal.AsBytes(seen.AsSpan())));
        Assert.Equal(0, seen[0]);
        Assert.Equal(0, Space.Read<int>(buffer));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void DeviceWrite_IsSeenByTheCpu_AndCpuWrite_IsSeenByTheDevice_WithoutAnyExclusivity()
    {
        var buffer = Space.Map(2 * Page, Protection.ReadWrite);
        var straddling = buffer + Page - 8;

        Assert.Equal(DeviceStatus.Ok, Mirror.Write(straddling, MemoryMarshal.AsBytes<long>([0x1111_2222_3333_4444, 0x5555_6666_7777_0001])));
        Assert.Equal(0x1111_2222_3333_4444, Space.Read<long>(straddling));
        Assert.Equal(0x5555_6666_7777_0001, Space.Read<long>(buffer + Page));

        Space.Write(buffer + 16, 77);
        Space.Write(buffer + Page + 16, 88);
        var seen = new int[2];
        Assert.Equal(DeviceStatus.Ok, Mirror.Read(buffer + 16, MemoryMarshal.AsBytes(seen.AsSpan(0, 1))));
        Assert.Equal(DeviceStatus.Ok, Mirror.Read(buffer + Page + 16, MemoryMarshal.AsBytes(seen.AsSpan(1, 1))));
        Assert.Equal(new[] { 77, 88 }, seen);

        Assert.Equal(0, Mirror.CountExclusive(buffer, 2 * Page));
        Assert.Equal(PageState.Present, Space.Inspect(buffer).State);
        Assert.Equal(PageState.Present, Space.Inspect(buffer + Page).State);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void DeviceWrite_AfterFork_BreaksCopyOnWrite_AndNeverReachesTheChild()
    {
        var buffer = Space.Map(Page, Protection.ReadWrite);
        Space.Write(buffer, 1);
        Assert.Equal(DeviceStatus.Ok, Mirror.Write(buffer, MemoryMarshal.AsBytes<int>([2]))); // the device maps the frame for writing

        var child = Own(Space.Fork());
        Assert.Equal(DeviceStatus.Ok, Mirror.Write(buffer, MemoryMarshal.AsBytes<int>([3])));

        Assert.Equal(3, Space.Read<int>(buffer));
        Assert.Equal(2, child.Read<int>(buffer));
        Assert.NotEqual(Space.Inspect(buffer).Frame, child.Inspect(buffer).Frame);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void MakeExclusive_OnSharedMapping_ThrowsNotSupported_AndChangesNothing()
    {
        var buffer = Space.Map(2 * Page, Protection.ReadWrite, Sharing.Shared);
        Space.Write(buffer, 5);
        var before = Space.Inspect(buffer);

        Assert.Throws<NotSupportedException>(() => Mirror.MakeExclusive(buffer, 2 * Page));

        Assert.Equal(before, Space.Inspect(buffer));
        Assert.Equal(0, Mirror.CountExclusive(buffer, 2 * Page));
        Assert.Equal(5, Space.Read<int>(buffer));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void MakeExclusive_OnReadOnlyMapping_ThrowsMemoryAccess_AndChangesNothing()
    {
        var buffer = Space.Map(Page, Protection.Read);
        var before = Space.Inspect(buffer);

        var error = Assert.Throws<MemoryAccessException>(() => Mirror.MakeExclusive(buffer, Page));

        Assert.Equal(buffer, error.Address);
        Assert.Equal(before, Space.Inspect(buffer));
        Assert.Equal(0, Mirror.CountExclusive(buffer, Page));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void MakeExclusive_OnRangeEndingInAHole_ThrowsMemoryAccess_AndGrantsNothing()
    {
        var buffer = Space.Map(2 * Page, Protection.ReadWrite);
        Space.Write(buffer, 9);
        Space.Unmap(buffer + Page, Page);
        var before = Space.Inspect(buffer);

        Assert.Throws<MemoryAccessException>(() => Mirror.MakeExclusive(buffer, 2 * Page));

        Assert.Equal(0, Mirror.CountExclusive(buffer, Page));
        Assert.Equal(before.State, Space.Inspect(buffer).State);
        Assert.Equal(9, Space.Read<int>(buffer));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void MakeExclusive_OnUnmappedRange_ThrowsMemoryAccess()
    {
        var buffer = Space.Map(Page, Protection.ReadWrite);
        Space.Unmap(buffer, Page);

        Assert.Throws<MemoryAccessException>(() => Mirror.MakeExclusive(buffer, Page));

        Assert.Equal(PageState.Unmapped, Space.Inspect(buffer).State);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void MakeExclusive_And_CountExclusive_WithMisalignedZeroOrOverflowingRange_ThrowArgument()
    {
        var buffer = Space.Map(2 * Page, Protection.ReadWrite);

        Assert.ThrowsAny<ArgumentException>(() => Mirror.MakeExclusive(buffer + 8, Page));
        Assert.ThrowsAny<ArgumentException>(() => Mirror.MakeExclusive(buffer, 0));
        Assert.ThrowsAny<ArgumentException>(() => Mirror.MakeExclusive(buffer, Page + 4));
        Assert.ThrowsAny<ArgumentException>(() => Mirror.MakeExclusive(ulong.MaxValue - Page + 1, 2 * Page));
        Assert.ThrowsAny<ArgumentException>(() => Mirror.CountExclusive(buffer + 8, Page));
        Assert.ThrowsAny<ArgumentException>(() => Mirror.CountExclusive(buffer, 0));

        Assert.Equal(PageState.NotPresent, Space.Inspect(buffer).State);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void Run_WithMisalignedOp_ThrowsArgument_AndAppliesNothing()
    {
        var buffer = Space.Map(Page, Protection.ReadWrite);
        AtomicOp[] misaligned32 = [new(buffer, AtomicKind.Add, 1), new(buffer + 2, AtomicKind.Add, 1)];
        AtomicOp[] misaligned64 = [new(buffer + 8, AtomicKind.Add, 1, Is64Bit: true), new(buffer + 20, AtomicKind.Add, 1, Is64Bit: true)];

        Assert.ThrowsAny<ArgumentException>(() => Mirror.Run(misaligned32));
        Assert.ThrowsAny<ArgumentException>(() => Mirror.Run(misaligned64));

        Assert.Equal(0, Space.Read<long>(buffer));
        Assert.Equal(0, Space.Read<long>(buffer + 8));
        Assert.Equal(0, Mirror.CountExclusive(buffer, Page));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void Run_WithTooShortOldValues_ThrowsArgument_AndAppliesNothing()
    {
        var buffer = Space.Map(Page, Protection.ReadWrite);
        AtomicOp[] ops = [new(buffer, AtomicKind.Add, 1), new(buffer, AtomicKind.Add, 1), new(buffer, AtomicKind.Add, 1)];

        Assert.ThrowsAny<ArgumentException>(() => Mirror.Run(ops, new long[2]));

        Assert.Equal(0, Space.Read<int>(buffer));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void Run_OnUnmappedPage_CountsTheOpNotMapped_AndRunsTheRest()
    {
        var buffer = Space.Map(2 * Page, Protection.ReadWrite);
        Space.Unmap(buffer + Page, Page);
        AtomicOp[] ops = [new(buffer, AtomicKind.Add, 5), new(buffer + Page, AtomicKind.Add, 5), new(buffer, AtomicKind.Add, 5)];
        var oldValues = new long[] { -1, -1, -1 };

        var result = Mirror.Run(ops, oldValues);

        Assert.Equal((2L, 1L, 0L), (result.Completed, result.NotMapped, result.PermissionDenied));
        Assert.Equal(10, Space.Read<int>(buffer));
        Assert.Equal(0, oldValues[1]);
        Assert.Equal(new[] { 0L, 5L }, new[] { oldValues[0], oldValues[2] }.Order());
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void Run_OnReadOnlyPage_CountsTheOpPermissionDenied_AndWritesNothing()
    {
        var writable = Space.Map(Page, Protection.ReadWrite);
        var readOnly = Space.Map(Page, Protection.Read);
        AtomicOp[] ops = [new(readOnly, AtomicKind.Exchange, 7), new(writable, AtomicKind.Exchange, 7)];

        var result = Mirror.Run(ops);

        Assert.Equal((1L, 0L, 1L), (result.Completed, result.NotMapped, result.PermissionDenied));
        Assert.Equal(0, Space.Read<int>(readOnly));
        Assert.Equal(7, Space.Read<int>(writable));
        Assert.NotEqual(PageState.DeviceExclusive, Space.Inspect(readOnly).State);
        AssertCleanTeardown();
    }
}
