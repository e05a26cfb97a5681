using GpuExclusive.Devices;
using GpuExclusive.Kernels;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// The host's side of the fault ring (docs/architecture.md, "device faults and the quantum"): what the thread that
/// services a running launch takes from it, driven directly with the count and records a launch would leave.
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    [DeviceFact]
    public void FaultService_WhenTheFaultCountWentBack_StartsTheRingOver_AndTakesTheNewRecord()
    {
        var page = Space.Map(Page, Protection.ReadWrite);
        var prepared = Own(Mirror.Prepare([new AtomicOp(page, AtomicKind.Add, 1)]));
        var batch = prepared.Batch;

        // The service took three records of a previous launch before this launch's records were reset; the kernel has
        // since recorded one fault, op 0, at the start of the ring.
        var launch = new LaunchFaults(batch, batch.States, batch.Faults, stride: 1) { Consumed = 3 };
        batch.Faults[0] = 0 + 1;
        Mirror.ServiceLaunchFaults(launch, count: 1);

        Assert.Equal(1, launch.Consumed);
        Assert.Equal(0, batch.Faults[0]); // taken
        Assert.True(launch.Wanted.ContainsKey(page >> 12), "the fault the kernel recorded was never taken");
        Assert.Equal(0, Mirror.HoldCount); // the launch does not run: nothing was mapped for it
        Space.AtomicAdd(page, 1);
        Assert.Equal(1, Space.Read<int>(page));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void Run_RefusingAWantedPageBetweenLaunches_ClearsItsMark()
    {
        // A kernel thread of an earlier launch faulted on the page and marked it wanted, the launch ended before the host
        // took its record, and the page became read-only meanwhile. The host refuses the op before the next launch; the
        // mark must go with the refusal, as it does when the host refuses while the launch runs: a mark left behind
        // tells every later thread that faults on the page that its fault is recorded already, and none records it.
        var page = Space.Map(Page, Protection.ReadWrite);
        var prepared = Own(Mirror.Prepare([new AtomicOp(page, AtomicKind.Add, 1)]));
        Mirror.MarkWantedForTest(page);
        Space.Protect(page, Page, Protection.Read);

        var result = Mirror.Run(prepared);

        Assert.Equal(1, result.PermissionDenied);
        Assert.False(DevicePte.IsWanted(Mirror.DeviceEntryForTest(page)), "the refused page is still marked wanted");
        Assert.Equal(0, Space.Read<int>(page));
        AssertCleanTeardown();
    }
}
