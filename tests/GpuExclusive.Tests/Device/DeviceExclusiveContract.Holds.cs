using GpuExclusive.Devices;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// Holds live only while their batch runs (docs/architecture.md, "device faults and the quantum"): a grant that lands
/// after the run it served has ended leaves nothing behind.
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    [DeviceFact]
    public void PageReturn_ThatLandsAfterItsRunEnded_MapsNothing_AndLeavesNoHold()
    {
        // A CPU access that took back a page the running batch wanted gives it back once the access is done
        // (docs/architecture.md, "FIFO hand-off"): it checks that the launch runs, waits a few microseconds for the
        // batch's mark, then grants. The run may end anywhere in between; here it ended before the grant.
        var page = Space.Map(Page, Protection.ReadWrite);
        var prepared = Own(Mirror.Prepare([new AtomicOp(page, AtomicKind.Add, 1)]));
        Assert.Equal(1, Mirror.Run(prepared).Completed);
        var launch = prepared.Batch.Launch;
        Assert.NotNull(launch);
        Assert.False(launch.Running);
        Space.AtomicAdd(page, 1); // the CPU takes the batch's page back

        Assert.Equal(0, new DeviceMirror.PageReturn(Mirror, page, launch).Grant());

        // The window the review found: the return saw the launch running, and the run ended before its grant took the
        // mirror lock (the launch's flag is only a hint there; the run's end is what decides).
        launch.Running = true;
        try
        {
            Assert.Equal(0, new DeviceMirror.PageReturn(Mirror, page, launch).Grant());
        }
        finally
        {
            launch.Running = false;
        }

        Assert.Equal(0, Mirror.HoldCount);
        Assert.Equal(0, Mirror.CountExclusive(page, Page));
        AssertInvariants();
        Space.AtomicAdd(page, 5);
        Assert.Equal(7, Space.Read<int>(page));
        AssertCleanTeardown();
    }
}
