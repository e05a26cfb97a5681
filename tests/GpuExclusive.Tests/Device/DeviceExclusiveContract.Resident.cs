using GpuExclusive.Diagnostics;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// The resident kernel (small batches served without a launch each) and revocation by hazard words (the kernel is not
/// stopped when the CPU takes a page back).
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    [DeviceFact]
    public void SmallBatches_RunOnTheResidentKernel_WithoutALaunchEach()
    {
        const int Batches = 60;
        // A long idle time, so that a loaded machine stalling this thread cannot make the kernel leave between batches.
        using var device = ExclusiveDevice.Open(new EngineSettings { Accelerator = Fixture.Kind, ResidentIdleMicroseconds = 10_000_000 });
        using var mirror = MirrorOn(device, Own(new AddressSpace(Pool)));
        var counter = mirror.Space.Map(Page, Protection.ReadWrite);
        Assert.Equal(1, mirror.MakeExclusive(counter, Page));
        var launches = device.Executor.Launches;

        for (var i = 0; i < Batches; i++)
        {
            var result = mirror.Run([new AtomicOp(counter, AtomicKind.Add, 1)]);
            Assert.Equal(1, result.Completed);
        }

        Assert.Equal(Batches, mirror.Space.Read<int>(counter));
        Assert.Equal(1, device.Executor.Launches - launches);
        Assert.True(device.Executor.IsResident);
        mirror.Dispose();
        device.Dispose();
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void ResidentKernel_LeavesAfterItsIdleTime_AndTheNextBatchLaunchesItAgain()
    {
        var counter = Space.Map(Page, Protection.ReadWrite);
        Assert.Equal(1, Mirror.Run([new AtomicOp(counter, AtomicKind.Add, 1)]).Completed);
        var launches = Device.Executor.ResidentLaunches;
        WaitUntilNotResident(Device);

        Assert.Equal(1, Mirror.Run([new AtomicOp(counter, AtomicKind.Add, 1)]).Completed);

        Assert.True(Device.Executor.ResidentLaunches > launches, "the batch after the idle time did not launch a resident kernel");
        Assert.Equal(2, Space.Read<int>(counter));
        AssertCleanTeardown();
    }

    /// <summary>Waits (bounded) until <paramref name="device"/>'s resident kernel has left.</summary>
    protected static void WaitUntilNotResident(ExclusiveDevice device)
    {
        // The default idle time is 500 µs; allow the timer and a loaded machine plenty.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (device.Executor.IsResident && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(5);
        }

        Assert.False(device.Executor.IsResident, "the resident kernel still polls 10 s after its last batch");
    }

    [DeviceFact]
    public void ResidentKernel_IsStopped_OnceIdleForTheIdleTime()
    {
        var counter = Space.Map(Page, Protection.ReadWrite);
        var residentLaunches = Device.Executor.ResidentLaunches;
        Mirror.Run([new AtomicOp(counter, AtomicKind.Add, 1)]);
        Assert.True(Device.Executor.ResidentLaunches > residentLaunches, "the batch did not run on a resident kernel: nothing to stop");

        WaitUntilNotResident(Device);

        Assert.Equal(1, Space.Read<int>(counter));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void CpuTouchingAnotherExclusivePage_WhileALongBatchRuns_DoesNotStopTheKernel()
    {
        const int Ops = 100_000; // far beyond the resident kernel's batch size: a launch of its own
        var busy = Space.Map(2 * Page, Protection.ReadWrite);
        var other = Space.Map(Page, Protection.ReadWrite);
        Assert.Equal(2, Mirror.MakeExclusive(busy, 2 * Page));
        var ops = Enumerable.Range(0, Ops).Select(i => new AtomicOp(busy + ((ulong)(i % 2) * Page), AtomicKind.Add, 1)).ToArray();
        var stops = Device.Executor.Stops;
        var launches = Device.Executor.Launches;

        var run = Start(() => Mirror.Run(ops));
        var toucher = Start(() =>
        {
            WaitForLaunch(Device, launches, run);

            var revocations = 0;
            while (!run.IsCompleted && revocations < 200)
            {
                // Grant the other page and take it straight back: each take-back is an invalidation of this mirror.
                Mirror.MakeExclusive(other, Page);
                Space.AtomicAdd(other, 1);
                revocations++;
            }

            return revocations;
        });

        AssertFinishes(run, "the long batch");
        AssertFinishes(toucher, "the CPU toucher");
        Assert.Equal(Ops, run.Result.Completed);
        Assert.True(toucher.Result > 0, "the batch finished before the CPU touched anything: the test proved nothing");
        Assert.Equal(stops, Device.Executor.Stops);
        Assert.Equal(Ops / 2, Space.Read<int>(busy));
        Assert.Equal(Ops / 2, Space.Read<int>(busy + Page));
        Assert.Equal(toucher.Result, Space.Read<int>(other));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void SmallBatchesOfTwoSpaces_Alternating_EachApplyExactlyOnce()
    {
        const int Rounds = 40;
        var otherPool = Own(new PagePool(16, lockMemory: false));
        var otherSpace = Own(new AddressSpace(otherPool));
        var otherMirror = Own(MirrorOn(Device, otherSpace));
        var mine = Space.Map(Page, Protection.ReadWrite);
        var theirs = otherSpace.Map(Page, Protection.ReadWrite);

        for (var i = 0; i < Rounds; i++)
        {
            Assert.Equal(1, Mirror.Run([new AtomicOp(mine, AtomicKind.Add, 1)]).Completed);
            Assert.Equal(1, otherMirror.Run([new AtomicOp(theirs, AtomicKind.Add, 2)]).Completed);
        }

        Assert.Equal(Rounds, Space.Read<int>(mine));
        Assert.Equal(2 * Rounds, otherSpace.Read<int>(theirs));
        InvariantChecker.Check(otherPool);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void SmallBatches_AcrossADevicePageTableGrowth_ApplyExactlyOnce()
    {
        // More pages than the device page table starts with: granting them swaps the table under the resident kernel.
        const int Pages = 1500;
        var first = Space.Map(Page, Protection.ReadWrite);
        Assert.Equal(1, Mirror.Run([new AtomicOp(first, AtomicKind.Add, 1)]).Completed);
        var many = Space.Map(Pages * Page, Protection.ReadWrite);

        for (var page = 0; page < Pages; page += 100)
        {
            Assert.Equal(1, Mirror.Run([new AtomicOp(first, AtomicKind.Add, 1), new AtomicOp(many + ((ulong)page * Page), AtomicKind.Add, page)]).Completed - 1);
        }

        Assert.Equal(Pages, Mirror.MakeExclusive(many, Pages * Page));
        Assert.Equal(1, Mirror.Run([new AtomicOp(first, AtomicKind.Add, 1)]).Completed);
        Assert.Equal(2 + (Pages / 100), Space.Read<int>(first));
        for (var page = 0; page < Pages; page += 100)
        {
            Assert.Equal(page, Space.Read<int>(many + ((ulong)page * Page)));
        }

        AssertCleanTeardown();
    }

    [DeviceFact]
    public void DisposingTheDevice_WhileSmallBatchesRun_EndsThemWithObjectDisposed_AndLosesNoAppliedOp()
    {
        var device = Fixture.Open();
        var pool = Own(new PagePool(8, lockMemory: false));
        var space = Own(new AddressSpace(pool));
        var mirror = MirrorOn(device, space);
        var counter = space.Map(Page, Protection.ReadWrite);
        var applied = 0;

        var runner = Start(() =>
        {
            try
            {
                while (true)
                {
                    if (mirror.Run([new AtomicOp(counter, AtomicKind.Add, 1)]).Completed == 1)
                    {
                        Interlocked.Increment(ref applied);
                    }
                }
            }
            catch (ObjectDisposedException)
            {
                return Volatile.Read(ref applied);
            }
        });
        var deadline = DateTime.UtcNow + Bound;
        while (Volatile.Read(ref applied) < 20 && !runner.IsCompleted && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(1);
        }

        device.Dispose();

        AssertFinishes(runner, "the batch loop");
        Assert.Null(runner.Exception);
        Assert.True(runner.Result >= 20, $"only {runner.Result} batches ran before the disposal");
        Assert.Equal(runner.Result, space.Read<int>(counter));
        AssertCleanTeardown();
    }
}
