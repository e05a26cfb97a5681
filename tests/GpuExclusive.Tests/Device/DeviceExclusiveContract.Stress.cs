namespace GpuExclusive.Tests.Device;

/// <summary>
/// Bounded concurrency tests: exactly-once under revocation (docs/architecture.md, invariant 4), forward progress (#6), and disposal while
/// a batch runs. Every wait is bounded by <see cref="Bound"/>; a hang fails the test.
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    private const int Counters = 16;

    [DeviceFact]
    public void Run_WithTwoCpuThreadsAddingToTheSameCounters_AppliesEveryAddExactlyOnce_AndOldValuesArePermutation()
    {
        const int Batches = 30;
        const int SharedOpsPerBatch = 192;
        const int DedicatedOpsPerBatch = 64;
        const int CpuAddLimit = 20_000_000; // a safety cap only: the CPU threads add for as long as the device runs
        var counters = Space.Map(Page, Protection.ReadWrite); // 16 ints at the start of one page
        var dedicated = counters + 1024;                      // same page: only the device adds here
        using var start = new Barrier(3);
        var deviceDone = 0;
        var cpuProgress = new long[2]; // adds so far per CPU thread, published every 64 adds

        var device = Start(() =>
        {
            start.SignalAndWait(Bound);
            long sharedCompleted = 0, revoked = 0;
            var batches = 0;
            var dedicatedOld = new List<long>();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            try
            {
                // At least Batches batches, and on until the CPU threads got going and took the page back from a batch
                // at least once: a fast device could otherwise be done before they start, or (descheduled between two
                // batches while they add) see them finish without ever meeting them, and nothing would have contended.
                for (var b = 0; b < Batches || ((Volatile.Read(ref cpuProgress[0]) + Volatile.Read(ref cpuProgress[1]) < 10_000 || revoked <= 1) && DateTime.UtcNow < deadline); b++)
                {
                    batches++;
                    var ops = new AtomicOp[SharedOpsPerBatch + DedicatedOpsPerBatch];
                    for (var i = 0; i < ops.Length; i++)
                    {
                        ops[i] = i % 4 == 3
                            ? new AtomicOp(dedicated, AtomicKind.Add, 1)
                            : new AtomicOp(counters + ((ulong)(i % Counters) * 4), AtomicKind.Add, 1);
                    }

                    var old = new long[ops.Length];
                    var result = Mirror.Run(ops, old);
                    Assert.Equal(ops.Length, result.Completed);
                    sharedCompleted += SharedOpsPerBatch;
                    revoked += result.DeviceFaults;
                    for (var i = 3; i < ops.Length; i += 4)
                    {
                        dedicatedOld.Add(old[i]);
                    }
                }
            }
            finally
            {
                Volatile.Write(ref deviceDone, 1);
            }

            return (sharedCompleted, revoked, dedicatedOld, batches);
        });
        var cpus = Enumerable.Range(0, 2).Select(t => Start(() =>
        {
            start.SignalAndWait(Bound);
            var adds = 0L;
            for (var k = t; adds < CpuAddLimit && Volatile.Read(ref deviceDone) == 0; k++)
            {
                Space.AtomicAdd(counters + ((ulong)(k % Counters) * 4), 1);
                if ((++adds & 63) == 0)
                {
                    Volatile.Write(ref cpuProgress[t], adds);
                }
            }

            return adds;
        })).ToArray();

        AssertFinishes(device, "the device thread");
        foreach (var cpu in cpus)
        {
            AssertFinishes(cpu, "a CPU thread");
        }

        var (deviceAdds, deviceFaults, dedicatedOldValues, batchesRun) = device.Result;
        var cpuAdds = cpus.Sum(c => c.Result);
        var sum = Enumerable.Range(0, Counters).Sum(k => (long)Space.Read<int>(counters + ((ulong)k * 4)));
        Assert.Equal(cpuAdds + deviceAdds, sum);
        Assert.Equal(batchesRun * DedicatedOpsPerBatch, Space.Read<int>(dedicated));
        Assert.Equal(Enumerable.Range(0, batchesRun * DedicatedOpsPerBatch).Select(i => (long)i), dedicatedOldValues.Order());
        Assert.True(cpuAdds > 0 && deviceFaults > 1, $"no contention happened (CPU adds {cpuAdds}, device faults {deviceFaults}): the test proved nothing");
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void Run_RevokedInTheMiddleOfALongBatch_ReplaysTheRest_AndAppliesEveryOpExactlyOnce()
    {
        const int Pages = 4;
        const int Ops = 200_000;
        var buffer = Space.Map(Pages * Page, Protection.ReadWrite);
        Assert.Equal(Pages, Mirror.MakeExclusive(buffer, Pages * Page));
        var targets = Enumerable.Range(0, Pages * 4).Select(k => buffer + ((ulong)(k / 4) * Page) + ((ulong)(k % 4) * 4)).ToArray();
        var ops = Enumerable.Range(0, Ops).Select(i => new AtomicOp(targets[i % targets.Length], AtomicKind.Add, 1)).ToArray();
        var launches = Device.Executor.Launches;

        var run = Start(() => Mirror.Run(ops));
        var toucher = Start(() =>
        {
            // Take the pages back from the CPU once the batch's first launch is under way.
            WaitForLaunch(Device, launches, run);

            var adds = 0L;
            for (var round = 0; round < 200 && !run.IsCompleted; round++)
            {
                var target = targets[round % targets.Length];
                _ = Space.Read<int>(target);
                Space.AtomicAdd(target, 1);
                adds++;
            }

            return adds;
        });

        AssertFinishes(run, "the long batch");
        AssertFinishes(toucher, "the CPU toucher");
        var result = run.Result;
        Assert.Equal(new BatchResult(Ops, 0, 0, result.DeviceFaults, result.Replays), result);
        Assert.True(result.Replays > 0 || result.DeviceFaults > 1, $"the CPU never interrupted the batch: {result}");
        var sum = targets.Sum(t => (long)Space.Read<int>(t));
        Assert.Equal(Ops + toucher.Result, sum);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void KernelsInFlight_CoversTheWholeLaunch_AndIsZeroOnceTheDeviceIsIdle()
    {
        // A revocation skips the hazard-word scan while this count is zero, so a launch must raise it before the kernel
        // can read a device PTE and keep it raised until the kernel is done.
        const int Ops = 1_000_000;
        var buffer = Space.Map(Page, Protection.ReadWrite);
        Assert.Equal(1, Mirror.MakeExclusive(buffer, Page));
        Assert.Equal(0, Device.KernelsInFlight);
        var ops = Enumerable.Repeat(new AtomicOp(buffer, AtomicKind.Add, 1), Ops).ToArray();
        var launches = Device.Executor.Launches;

        var run = Start(() => Mirror.Run(ops));
        WaitForLaunch(Device, launches, run);
        var seenInFlight = false;
        while (!run.IsCompleted && !seenInFlight)
        {
            seenInFlight = Device.KernelsInFlight > 0;
        }

        AssertFinishes(run, "the batch");
        Assert.True(seenInFlight, "no kernel counted in flight while the batch ran");

        // Small batches go to the resident kernel, which stays launched between them: counted in flight throughout.
        var small = ops[..16];
        var rounds = 0;
        seenInFlight = false;
        var residentRuns = Start(() =>
        {
            var deadline = DateTime.UtcNow + Bound;
            while (!Volatile.Read(ref seenInFlight) && DateTime.UtcNow < deadline)
            {
                Mirror.Run(small);
                rounds++;
            }

            return rounds;
        });
        while (!residentRuns.IsCompleted && !Volatile.Read(ref seenInFlight))
        {
            Volatile.Write(ref seenInFlight, Device.KernelsInFlight > 0);
        }

        AssertFinishes(residentRuns, "the small batches");
        Assert.True(seenInFlight, "no kernel counted in flight while small batches ran on the resident kernel");
        Assert.Equal(Ops + (16 * residentRuns.Result), Space.Read<int>(buffer));
        // A resident kernel stays launched for its idle time, then leaves; nothing is in flight after that.
        var deadline = DateTime.UtcNow + Bound;
        while (Device.KernelsInFlight != 0)
        {
            Device.Executor.Quiesce();
            Device.Executor.Resume();
            Assert.True(DateTime.UtcNow < deadline, $"{Device.KernelsInFlight} kernel(s) still counted in flight on an idle device");
            Thread.Sleep(1);
        }

        AssertCleanTeardown();
    }

    [DeviceFact]
    public void TwoDevices_RunningConcurrentlyOnOnePage_BothMakeProgress_AndTotalsAreExact()
    {
        const int Batches = 25;
        const int OpsPerBatch = 512;
        var buffer = Space.Map(Page, Protection.ReadWrite);
        var mirrors = new[] { Mirror, Own(MirrorOn(Fixture.SecondDevice, Space)) };
        using var start = new Barrier(2);

        var players = Enumerable.Range(0, 2).Select(me => Start(() =>
        {
            var ops = Enumerable.Range(0, OpsPerBatch).Select(i => new AtomicOp(buffer + ((ulong)(i % 8) * 4), AtomicKind.Add, 1)).ToArray();
            start.SignalAndWait(Bound);
            long completed = 0;
            for (var b = 0; b < Batches; b++)
            {
                completed += mirrors[me].Run(ops).Completed;
            }

            return completed;
        })).ToArray();

        foreach (var player in players)
        {
            AssertFinishes(player, "a device thread");
            Assert.Equal(Batches * OpsPerBatch, player.Result);
        }

        var sum = Enumerable.Range(0, 8).Sum(k => (long)Space.Read<int>(buffer + ((ulong)k * 4)));
        Assert.Equal(2L * Batches * OpsPerBatch, sum);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void DisposingTheSpace_WhileALongBatchRuns_StopsItCleanly_AndReturnsEveryFrame()
    {
        const int Ops = 200_000;
        var buffer = Space.Map(4 * Page, Protection.ReadWrite);
        var ops = Enumerable.Range(0, Ops).Select(i => new AtomicOp(buffer + ((ulong)(i % 4) * Page), AtomicKind.Add, 1)).ToArray();
        var launches = Device.Executor.Launches;

        var run = Start(() => Mirror.Run(ops));
        WaitForLaunch(Device, launches, run);
        var dispose = Start(() =>
        {
            Space.Dispose();
            return true;
        });

        AssertFinishes(dispose, "AddressSpace.Dispose during a batch");
        AssertFinishes(run, "the batch whose space was disposed");
        if (run.IsFaulted)
        {
            Assert.IsType<ObjectDisposedException>(run.Exception!.InnerException);
        }
        else
        {
            Assert.Equal(Ops, run.Result.Completed); // it finished before the disposal reached it
        }

        Assert.Throws<ObjectDisposedException>(() => Mirror.Run([new AtomicOp(buffer, AtomicKind.Add, 1)]));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void DisposingTheDevice_WhileALongBatchRuns_StopsItCleanly_AndTheCpuGetsThePagesBack()
    {
        const int Ops = 200_000;
        var device = Own(Fixture.Open());
        var mirror = Own(MirrorOn(device, Space));
        var buffer = Space.Map(4 * Page, Protection.ReadWrite);
        Assert.Equal(4, mirror.MakeExclusive(buffer, 4 * Page));
        var ops = Enumerable.Range(0, Ops).Select(i => new AtomicOp(buffer + ((ulong)(i % 4) * Page), AtomicKind.Add, 1)).ToArray();
        var launches = device.Executor.Launches;

        var run = Start(() => mirror.Run(ops));
        WaitForLaunch(device, launches, run);
        var dispose = Start(() =>
        {
            device.Dispose();
            return true;
        });

        AssertFinishes(dispose, "ExclusiveDevice.Dispose during a batch");
        AssertFinishes(run, "the batch whose device was disposed");
        if (run.IsFaulted)
        {
            Assert.IsType<ObjectDisposedException>(run.Exception!.InnerException);
        }
        else
        {
            Assert.Equal(Ops, run.Result.Completed);
        }

        // The disposed device's pages are still device-exclusive until the CPU touches them: every touch must restore them.
        var total = Bounded("CPU reads of the disposed device's pages", () => Enumerable.Range(0, 4).Sum(p => (long)Space.Read<int>(buffer + ((ulong)p * Page))));
        Assert.InRange(total, 0, Ops);
        if (!run.IsFaulted)
        {
            Assert.Equal(Ops, total);
        }

        for (var p = 0UL; p < 4; p++)
        {
            Space.AtomicAdd(buffer + (p * Page), 1);
            Assert.Equal(PageState.Present, Space.Inspect(buffer + (p * Page)).State);
        }

        AssertCleanTeardown();
    }

    /// <summary>Waits (bounded) until <paramref name="device"/> has launched since <paramref name="launches"/>, or <paramref name="run"/> ended.</summary>
    private static void WaitForLaunch(ExclusiveDevice device, long launches, Task run)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (device.Executor.Launches == launches && !run.IsCompleted)
        {
            Assert.True(DateTime.UtcNow < deadline, "the batch never launched");
            Thread.SpinWait(20);
        }
    }
}
