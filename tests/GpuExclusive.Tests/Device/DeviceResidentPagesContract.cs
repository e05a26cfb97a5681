using System.Runtime.InteropServices;
using GpuExclusive.Diagnostics;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// What only device-resident pages have (docs/architecture.md, "device-resident pages"): a bounded device memory whose
/// least recently used pages go back to the CPU, contents that an unmap or a discard throws away instead of copying back,
/// a write-back on the mirror's disposal, and fork. (Every other rule is the whole device contract, run in this
/// placement by <see cref="CpuAcceleratorResidentDeviceTests"/>.) Each test opens a device of its own with room for
/// <see cref="Limit"/> resident pages.
/// </summary>
public abstract class DeviceResidentPagesContract : IDisposable
{
    private const ulong Page = PagePool.PageSize;
    private const int Limit = 4;
    private const int IntsPerPage = (int)Page / sizeof(int);

    private readonly PagePool _pool = new(256);
    private readonly AddressSpace _space;
    private readonly ExclusiveDevice _device;
    private readonly DeviceMirror _mirror;

    protected DeviceResidentPagesContract(DeviceFixture fixture)
    {
        _space = new AddressSpace(_pool);
        _device = ExclusiveDevice.Open(new EngineSettings { Accelerator = fixture.Kind, DeviceResidentPages = Limit });
        _mirror = _device.Mirror(_space, PagePlacement.DeviceResident);
    }

    [DeviceFact]
    public void Mirror_TakesItsPlacement_AndTheDevicesDefaultComesFromTheSettings()
    {
        Assert.Equal(PagePlacement.DeviceResident, _mirror.Placement);
        Assert.Equal(PagePlacement.InPlace, _device.DefaultPlacement);
        using var other = new AddressSpace(_pool);
        using var inPlace = _device.Mirror(other);
        Assert.Equal(PagePlacement.InPlace, inPlace.Placement);
        Assert.Throws<ArgumentOutOfRangeException>(() => _device.Mirror(other, (PagePlacement)7));
    }

    [DeviceFact]
    public void Grant_MakesThePageResident_AndTheDevicesAtomicsLandInDeviceMemoryUntilTheCpuTakesItBack()
    {
        var page = MapIota(1);
        Assert.Equal(1, _mirror.MakeExclusive(page, Page));
        Assert.Equal(1, _mirror.ResidentCount);

        Assert.Equal(1, _mirror.Run([new AtomicOp(page, AtomicKind.Add, 1000)]).Completed);

        // The frame still holds what the CPU left: the add went to the device's copy.
        Assert.Equal(0, FrameInt(page));
        var buffer = new byte[sizeof(int)];
        Assert.Equal(DeviceStatus.Ok, _mirror.Read(page, buffer));
        Assert.Equal(1000, BitConverter.ToInt32(buffer)); // a device read sees its own copy

        var writtenBack = _device.ResidentPages.WrittenBack;
        Assert.Equal(1000, _space.Read<int>(page)); // the CPU touch copies it back before the CPU sees the page
        Assert.Equal(writtenBack + 1, _device.ResidentPages.WrittenBack);
        Assert.Equal(0, _mirror.ResidentCount);
        Assert.Equal(0, _device.ResidentPages.InUse);
        var info = _space.Inspect(page);
        Assert.True(info.Dirty && info.SoftDirty, "a resident page's restore marks it dirty, as if the device had written in place");
        AssertClean();
    }

    [DeviceFact]
    public void Grant_PastTheLimit_HandsTheLeastRecentlyUsedPagesBack_WithEveryValue()
    {
        var buffer = MapIota(Limit + 2);
        Assert.Equal(Limit, _mirror.MakeExclusive(buffer, Limit * Page));

        // Use the pages one batch at a time, page 0 first: pages 0 and 1 are then the least recently used.
        for (var p = 0; p < Limit; p++)
        {
            Assert.Equal(1, _mirror.Run([new AtomicOp(At(buffer, p), AtomicKind.Add, 1000)]).Completed);
        }

        var evictions = _device.ResidentPages.Evictions;
        Assert.Equal(2, _mirror.MakeExclusive(At(buffer, Limit), 2 * Page));

        Assert.Equal(evictions + 2, _device.ResidentPages.Evictions);
        Assert.Equal(Limit, _mirror.ResidentCount);
        Assert.Equal(0, _mirror.CountExclusive(buffer, 2 * Page));
        Assert.Equal(PageState.Present, _space.Inspect(buffer).State);
        Assert.Equal(Limit, _mirror.CountExclusive(At(buffer, 2), Limit * Page));
        AssertInvariants();

        var ints = CpuInts(buffer, Limit + 2);
        for (var i = 0; i < ints.Length; i++)
        {
            var expected = i + (i % IntsPerPage == 0 && i / IntsPerPage < Limit ? 1000 : 0);
            Assert.Equal(expected, ints[i]);
        }

        AssertClean();
    }

    [DeviceFact]
    public void Batch_OverMorePagesThanTheLimit_RunsTheRestInPlace_AndAppliesEveryOpOnce()
    {
        const int Pages = 3 * Limit;
        const int Rounds = 200;
        var buffer = MapIota(Pages);
        var ops = new List<AtomicOp>();
        for (var round = 0; round < Rounds; round++)
        {
            for (var p = 0; p < Pages; p++)
            {
                ops.Add(new AtomicOp(At(buffer, p) + 8, AtomicKind.Add, 1));
            }
        }

        var result = _mirror.Run(ops.ToArray());

        Assert.Equal(ops.Count, result.Completed);
        Assert.Equal(Pages, _mirror.CountExclusive(buffer, Pages * Page));
        Assert.InRange(_mirror.ResidentCount, 1, Limit);
        AssertInvariants();
        var ints = CpuInts(buffer, Pages);
        for (var p = 0; p < Pages; p++)
        {
            Assert.Equal((p * IntsPerPage) + 2 + Rounds, ints[(p * IntsPerPage) + 2]);
        }

        AssertClean();
    }

    [DeviceFact]
    public void Discard_OfAResidentPage_FreesItsSlotWithoutCopyingItBack()
    {
        var buffer = MapIota(2);
        Assert.Equal(2, _mirror.MakeExclusive(buffer, 2 * Page));
        Assert.Equal(2, _mirror.Run([new AtomicOp(buffer, AtomicKind.Add, 5), new AtomicOp(At(buffer, 1), AtomicKind.Add, 5)]).Completed);
        var writtenBack = _device.ResidentPages.WrittenBack;
        var dropped = _device.ResidentPages.Dropped;

        _space.Discard(buffer, Page);

        Assert.Equal(writtenBack, _device.ResidentPages.WrittenBack);
        Assert.Equal(dropped + 1, _device.ResidentPages.Dropped);
        Assert.Equal(1, _mirror.ResidentCount);
        Assert.Equal(0, _space.Read<int>(buffer)); // discarded: a fresh zero page, not the device's copy
        Assert.Equal(IntsPerPage + 5, _space.Read<int>(At(buffer, 1))); // its neighbour kept the device's add
        AssertClean();
    }

    [DeviceFact]
    public void Unmap_OfResidentPages_FreesTheirSlotsWithoutCopyingThemBack()
    {
        var buffer = MapIota(Limit);
        Assert.Equal(Limit, _mirror.MakeExclusive(buffer, Limit * Page));
        var writtenBack = _device.ResidentPages.WrittenBack;

        _space.Unmap(buffer, Limit * Page);

        Assert.Equal(writtenBack, _device.ResidentPages.WrittenBack);
        Assert.Equal(0, _device.ResidentPages.InUse);
        Assert.Equal(_pool.Capacity, _pool.FreePages);
        AssertClean();
    }

    [DeviceFact]
    public void Fork_WithResidentPages_GivesParentAndChildTheDevicesWrites_ThenKeepsThemApart()
    {
        var buffer = MapIota(2);
        Assert.Equal(2, _mirror.MakeExclusive(buffer, 2 * Page));
        Assert.Equal(2, _mirror.Run([new AtomicOp(buffer, AtomicKind.Add, 100), new AtomicOp(At(buffer, 1), AtomicKind.Add, 100)]).Completed);

        using var child = _space.Fork();

        Assert.Equal(0, _mirror.ResidentCount); // fork took the pages back (written back) before sharing them
        Assert.Equal(100, child.Read<int>(buffer));
        Assert.Equal(IntsPerPage + 100, child.Read<int>(At(buffer, 1)));

        // The parent's device works on its own copy again; the child keeps the value at the fork.
        Assert.Equal(1, _mirror.Run([new AtomicOp(buffer, AtomicKind.Add, 1)]).Completed);
        Assert.Equal(1, _mirror.ResidentCount);
        Assert.Equal(101, _space.Read<int>(buffer));
        Assert.Equal(100, child.Read<int>(buffer));
        AssertInvariants();
        child.Dispose();
        AssertClean();
    }

    [DeviceFact]
    public void MirrorDispose_WritesEveryResidentPageBack_AndThePagesStayDeviceExclusiveUntilTouched()
    {
        var buffer = MapIota(2);
        Assert.Equal(2, _mirror.MakeExclusive(buffer, 2 * Page));
        Assert.Equal(1, _mirror.Run([new AtomicOp(At(buffer, 1), AtomicKind.Add, 7)]).Completed);

        _mirror.Dispose();

        Assert.Equal(0, _device.ResidentPages.InUse);
        Assert.Equal(PageState.DeviceExclusive, _space.Inspect(At(buffer, 1)).State);
        Assert.Equal(IntsPerPage + 7, FrameInt(At(buffer, 1))); // back in the frame before any touch
        Assert.Equal(IntsPerPage + 7, _space.Read<int>(At(buffer, 1)));
        AssertClean();
    }

    public void Dispose()
    {
        _mirror.Dispose();
        _space.Dispose();
        _device.Dispose();
        _pool.Dispose();
        GC.SuppressFinalize(this);
    }

    private static ulong At(ulong buffer, int page) => buffer + ((ulong)page * Page);

    private ulong MapIota(int pages)
    {
        var address = _space.Map((ulong)pages * Page, Protection.ReadWrite);
        var values = Enumerable.Range(0, pages * IntsPerPage).ToArray();
        _space.Write(address, MemoryMarshal.AsBytes(values.AsSpan()));
        return address;
    }

    private int[] CpuInts(ulong address, int pages)
    {
        var values = new int[pages * IntsPerPage];
        _space.Read(address, MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    /// <summary>The int at <paramref name="address"/> in its frame, read without a CPU access (no revocation).</summary>
    private unsafe int FrameInt(ulong address)
    {
        var frame = _space.Inspect(address).Frame;
        return *(int*)(_pool.FrameAddress(frame) + (address & (Page - 1)));
    }

    private void AssertInvariants() => InvariantChecker.Check(_pool);

    private void AssertClean()
    {
        AssertInvariants();
        _mirror.Dispose();
        _space.Dispose();
        Assert.Equal(_pool.Capacity, _pool.FreePages);
        Assert.Equal(0, _device.ResidentPages.InUse);
    }
}
