using GpuExclusive.Kernels;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// The hazard protocol (docs/architecture.md, "the hazard protocol"): a revocation waits only for kernel threads whose
/// hazard word names the page — and a thread names a page only while it works on it.
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    [DeviceFact]
    public void Revocation_OfAPageAThreadLeftForOpsAlreadyDone_DoesNotWaitForThatThread()
    {
        // One kernel thread: op 0 on the page is pending, every later op was applied by an earlier launch (a replay).
        // The thread applies op 0, then skips the rest; stalled while it skips, it must not still name the page.
        const int Ops = 200_000;
        var device = Own(ExclusiveDevice.Open(new EngineSettings
        {
            Accelerator = Fixture.Kind,
            KernelGroups = 1,
            KernelGroupSize = 1,
            ResidentBatchOps = 0,
        }));
        var mirror = Own(MirrorOn(device, Space));
        var page = Space.Map(Page, Protection.ReadWrite);
        Assert.Equal(1, mirror.MakeExclusive(page, Page));
        var prepared = Own(mirror.Prepare(Enumerable.Repeat(new AtomicOp(page, AtomicKind.Add, 1), Ops).ToArray()));
        var batch = prepared.Batch;
        Task? launch = null;
        var applied = 0; // op 0, once per attempt
        try
        {
            for (var attempt = 0; attempt < 20 && launch is null; attempt++)
            {
                batch.States.AsSpan(Ops).Fill(OpState.Done);
                batch.States[0] = OpState.Pending;
                device.StallKernelsForTest(true); // the thread stops at its first stop poll, before op 0
                var started = Start(() =>
                {
                    device.Launcher.LaunchBatch(batch, mirror);
                    return true;
                });

                // Let it past that poll for an instant, and stall it again: it applies op 0 and stops at a later poll,
                // among the ops it skips (one poll every 64 ops).
                var deadline = DateTime.UtcNow + Bound;
                while (Volatile.Read(ref batch.States[0]) != OpState.Done && !started.IsCompleted)
                {
                    Assert.True(DateTime.UtcNow < deadline, "the kernel never applied op 0");
                    device.StallKernelsForTest(false);
                    device.StallKernelsForTest(true);
                    Thread.SpinWait(1000);
                }

                applied++;
                Thread.Sleep(50);
                if (!started.IsCompleted)
                {
                    launch = started; // stalled after op 0, before the end of its share
                    break;
                }

                // It ran to the end before the stall came back (this thread was descheduled): try again.
                device.StallKernelsForTest(false);
                AssertFinishes(started, "a launch that was not stalled");
            }

            Assert.True(launch is not null, "the kernel thread never stalled between op 0 and the end of its share");

            // Before it was fixed, the skipping thread kept naming the page: the CPU read waited for it until the
            // device's deadline (10 s) and the device was declared failed.
            var read = Start(() => Space.Read<int>(page));
            Assert.True(read.Wait(TimeSpan.FromSeconds(3)), "a CPU read of the page waited for a kernel thread that had left it");
            Assert.Equal(applied, read.Result);
        }
        finally
        {
            device.StallKernelsForTest(false);
        }

        AssertFinishes(launch!, "the launch, released");
        Assert.Null(launch!.Exception);
        Assert.Null(device.Executor.Failure);
        AssertCleanTeardown();
    }
}
