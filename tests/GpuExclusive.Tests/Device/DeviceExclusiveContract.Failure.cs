using System.Diagnostics;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// Bounded waits (docs/architecture.md, "bounded waits"): a device that stops answering is declared failed within its
/// deadline — the waiting call throws <see cref="DeviceFailedException"/>, the CPU gets every page back with everything
/// already applied, later calls throw the same failure, and the CPU and other devices go on. The device is made to stop
/// answering with a test hook: its kernels spin at their next stop poll until released.
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    /// <summary>The deadline of the devices these tests fail on purpose.</summary>
    private static readonly TimeSpan FailureTimeout = TimeSpan.FromMilliseconds(300);

    [DeviceFact]
    public void Device_WhoseLaunchStopsAnswering_IsDeclaredFailed_AndTheCpuGetsItsPagesBackWithEverythingApplied()
    {
        AssertDeclaredFailedOnStall(residentBatchOps: 0, expectedWait: "launch");
    }

    [DeviceFact]
    public void Device_WhoseResidentKernelStopsAnswering_IsDeclaredFailed_AndTheCpuGetsItsPagesBackWithEverythingApplied()
    {
        AssertDeclaredFailedOnStall(residentBatchOps: 1024, expectedWait: "resident kernel");
    }

    [DeviceFact]
    public void CpuTouch_OfAPageAStalledKernelIsUsing_CompletesWithinTheDeadline_AndTheDeviceIsDeclaredFailed()
    {
        const int Ops = 2_000_000;
        var device = OpenFailingDevice(residentBatchOps: 0);
        var mirror = Own(MirrorOn(device, Space));
        var page = Space.Map(Page, Protection.ReadWrite);
        var ops = Enumerable.Repeat(new AtomicOp(page, AtomicKind.Add, 1), Ops).ToArray();
        long applied = 0;
        Task<BatchResult>? run = null;
        try
        {
            // Stall the kernel while it works on the page (so a thread holds a hazard word on it). A batch that ends
            // before the stall reaches it proves nothing: run another.
            for (var attempt = 0; attempt < 5; attempt++)
            {
                var beats = device.HeartbeatSumForTest();
                run = Start(() => mirror.Run(ops));
                WaitUntil(() => device.HeartbeatSumForTest() != beats || run.IsCompleted, "the batch to start");
                device.StallKernelsForTest(true);
                if (!run.IsCompleted)
                {
                    break;
                }

                device.StallKernelsForTest(false);
                Assert.Equal(Ops, run.Result.Completed);
                applied += Ops;
            }

            Assert.False(run!.IsCompleted, "every batch ended before the stall reached it");

            // The CPU touches the page: the revocation waits for the stalled thread's hazard word, gives up at the
            // deadline, declares the device failed and restores the page.
            var clock = Stopwatch.StartNew();
            var value = Bounded("a CPU read of the page a stalled kernel holds", () => Space.Read<int>(page));
            clock.Stop();
            Assert.InRange(clock.Elapsed, TimeSpan.Zero, FailureTimeout * 10);
            Assert.InRange(value, applied, applied + Ops);

            AssertFinishes(run, "the batch of the stalled kernel");
            var failure = Assert.IsType<DeviceFailedException>(run.Exception?.InnerException);
            Assert.Equal(device.Name, failure.DeviceName);
            AssertFinishes(device.FailureCleanup, "giving the failed device's pages back");

            // Released, the stalled threads see the stop the failure raised and apply nothing more.
            device.StallKernelsForTest(false);
            device.Dispose();
            Assert.Equal(value, Space.Read<int>(page));
            Assert.Equal(PageState.Present, Space.Inspect(page).State);
        }
        finally
        {
            device.StallKernelsForTest(false);
        }

        AssertCleanTeardown();
    }

    [DeviceFact]
    public void LongBatch_ThatKeepsMakingProgress_OutlastsTheDeadline_WithoutBeingDeclaredFailed()
    {
        // Calibrate on the shared device: a batch that lasts several deadlines on this machine.
        var page = Space.Map(Page, Protection.ReadWrite);
        Assert.Equal(1, Mirror.MakeExclusive(page, Page));
        var probe = Enumerable.Repeat(new AtomicOp(page, AtomicKind.Add, 1), 200_000).ToArray();
        var clock = Stopwatch.StartNew();
        Mirror.Run(probe);
        var perOp = clock.Elapsed / probe.Length;
        var timeout = TimeSpan.FromMilliseconds(100);
        var ops = (int)Math.Clamp(5 * timeout.Ticks / Math.Max(1, perOp.Ticks), 400_000, 8_000_000);

        var device = Own(ExclusiveDevice.Open(new EngineSettings { Accelerator = Fixture.Kind, DeviceTimeoutMilliseconds = (int)timeout.TotalMilliseconds, ResidentBatchOps = 0 }));
        var mirror = Own(MirrorOn(device, Space));
        clock.Restart();
        var result = Bounded("a long batch", () => mirror.Run(Enumerable.Repeat(new AtomicOp(page, AtomicKind.Add, 1), ops).ToArray()));
        clock.Stop();

        Assert.Equal(ops, result.Completed);
        Assert.True(clock.Elapsed > timeout, $"the batch took {clock.Elapsed.TotalMilliseconds:0} ms, not longer than the {timeout.TotalMilliseconds} ms deadline: nothing was tested");
        Assert.Null(device.Executor.Failure);
        Assert.Equal(probe.Length + ops, Space.Read<int>(page));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void TwoDevicesOnOnePool_DisposedInEitherOrder_ThenThePool_EachWorkedAndEveryFrameReturns()
    {
        foreach (var secondFirst in new[] { false, true })
        {
            using var pool = new PagePool(64);
            var space = new AddressSpace(pool);
            var first = Fixture.Open();
            var second = Fixture.Open();
            var firstMirror = MirrorOn(first, space);
            var secondMirror = MirrorOn(second, space);
            var page = space.Map(Page, Protection.ReadWrite);

            Assert.Equal(1, firstMirror.Run([new AtomicOp(page, AtomicKind.Add, 1)]).Completed);
            Assert.Equal(1, secondMirror.Run([new AtomicOp(page, AtomicKind.Add, 10)]).Completed);
            Assert.Equal(1, firstMirror.Run([new AtomicOp(page, AtomicKind.Add, 100)]).Completed);
            Assert.Equal(111, space.Read<int>(page));

            (secondFirst ? second : first).Dispose();
            space.AtomicAdd(page, 1000);
            (secondFirst ? first : second).Dispose();
            Assert.Equal(1111, space.Read<int>(page));
            space.Dispose();
            Assert.Equal(pool.Capacity, pool.FreePages);
        }

        AssertCleanTeardown();
    }

    /// <summary>
    /// Runs a batch on a device whose kernels are stalled and checks every promise of a failure: the call throws within
    /// the deadline, naming the device and the wait; the pages go back to the CPU with what was applied before; later
    /// calls throw; the CPU and the fixture's own device go on.
    /// </summary>
    private void AssertDeclaredFailedOnStall(int residentBatchOps, string expectedWait)
    {
        const int Pages = 4;
        const int Adds = 500;
        var device = OpenFailingDevice(residentBatchOps);
        var mirror = Own(MirrorOn(device, Space));
        var buffer = Space.Map(Pages * Page, Protection.ReadWrite);
        Assert.Equal(Pages, mirror.MakeExclusive(buffer, Pages * Page));
        var ops = Enumerable.Range(0, Adds).Select(i => new AtomicOp(buffer + ((ulong)(i % Pages) * Page), AtomicKind.Add, 1)).ToArray();
        Assert.Equal(Adds, mirror.Run(ops).Completed);
        try
        {
            device.StallKernelsForTest(true);
            var clock = Stopwatch.StartNew();
            var failure = Bounded("a batch on a stalled device", () => Assert.Throws<DeviceFailedException>(() => mirror.Run(ops)));
            clock.Stop();

            Assert.InRange(clock.Elapsed, FailureTimeout, FailureTimeout * 10);
            Assert.Equal(device.Name, failure.DeviceName);
            Assert.Contains(expectedWait, failure.WaitingFor, StringComparison.Ordinal);
            Assert.Contains(device.Name, failure.Message, StringComparison.Ordinal);
            AssertFinishes(device.FailureCleanup, "giving the failed device's pages back");

            // Every page is the CPU's again, with every add applied before the stall (the stalled batch applied none:
            // its threads stalled at their first poll).
            for (var p = 0UL; p < Pages; p++)
            {
                Assert.Equal(PageState.Present, Space.Inspect(buffer + (p * Page)).State);
                Assert.Equal(Adds / Pages, Space.Read<int>(buffer + (p * Page)));
            }

            // Later calls on the device throw the same failure.
            Assert.Equal(failure.Message, Assert.Throws<DeviceFailedException>(() => mirror.Run(ops)).Message);
            Assert.Throws<DeviceFailedException>(() => mirror.MakeExclusive(buffer, Page));
            Assert.Throws<DeviceFailedException>(() => mirror.Read(buffer, new byte[4]));
            Assert.Throws<DeviceFailedException>(() => mirror.Prepare(ops));
            using (var other = new AddressSpace(Pool))
            {
                Assert.Throws<DeviceFailedException>(() => MirrorOn(device, other));
            }

            // The CPU and the other device are unaffected.
            Assert.Equal(Adds / Pages + 1, Space.AtomicAdd(buffer, 1));
            Assert.Equal(Adds, Mirror.Run(ops).Completed);
            Assert.Equal((2 * Adds / Pages) + 1, Space.Read<int>(buffer));
        }
        finally
        {
            device.StallKernelsForTest(false);
        }

        device.Dispose();
        AssertCleanTeardown();
    }

    /// <summary>A device of this backend with a short deadline, owned by the test.</summary>
    private ExclusiveDevice OpenFailingDevice(int residentBatchOps) =>
        Own(ExclusiveDevice.Open(new EngineSettings
        {
            Accelerator = Fixture.Kind,
            DeviceTimeoutMilliseconds = (int)FailureTimeout.TotalMilliseconds,
            ResidentBatchOps = residentBatchOps,
        }));

    /// <summary>Spins (bounded) until <paramref name="condition"/> holds.</summary>
    private static void WaitUntil(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            Thread.Yield();
        }
    }
}
