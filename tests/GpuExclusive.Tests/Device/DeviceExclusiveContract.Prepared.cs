namespace GpuExclusive.Tests.Device;

/// <summary>
/// Prepared batches: ops validated and translated once, run again and again with the same semantics as a one-off
/// batch — faults granted, revoked pages replayed, every op applied exactly once per run.
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    [DeviceFact]
    public void PreparedBatch_RunThreeTimes_AppliesEveryOpExactlyOncePerRun_AndReportsOldValues()
    {
        const int Pages = 32;
        const int OpsPerPage = 40;
        var counters = Space.Map(Pages * Page, Protection.ReadWrite);
        AtomicOp[] ops = [.. Enumerable.Range(0, Pages * OpsPerPage).Select(i => new AtomicOp(counters + ((ulong)(i % Pages) * Page), AtomicKind.Add, 1))];
        using var batch = Mirror.Prepare(ops);
        Assert.Equal(ops.Length, batch.Count);
        Assert.Same(Mirror, batch.Mirror);
        Assert.Equal(0, Space.Read<int>(counters)); // preparing runs nothing

        var oldValues = new long[ops.Length];
        for (var run = 1; run <= 3; run++)
        {
            var result = Mirror.Run(batch, oldValues);
            Assert.Equal(ops.Length, result.Completed);
            Assert.Equal(0, result.NotMapped + result.PermissionDenied);
        }

        for (var page = 0; page < Pages; page++)
        {
            Assert.Equal(3 * OpsPerPage, Space.Read<int>(counters + ((ulong)page * Page)));
            // The third run's adds to one counter saw each value from 2 × OpsPerPage up, once each.
            var seen = Enumerable.Range(0, OpsPerPage).Select(k => oldValues[(k * Pages) + page]).Order().ToArray();
            Assert.Equal(Enumerable.Range(2 * OpsPerPage, OpsPerPage).Select(v => (long)v), seen);
        }

        AssertCleanTeardown();
    }

    [DeviceFact]
    public void PreparedBatch_AfterTheCpuTookItsPagesBack_GrantsThemAgain_AndStaysExact()
    {
        const int Pages = 16;
        var counters = Space.Map(Pages * Page, Protection.ReadWrite);
        using var batch = Mirror.Prepare([.. Enumerable.Range(0, Pages).Select(p => new AtomicOp(counters + ((ulong)p * Page), AtomicKind.Add, 1))]);

        Assert.Equal(Pages, Mirror.Run(batch).Completed);
        Assert.Equal(Pages, Mirror.CountExclusive(counters, Pages * Page));
        for (var p = 0; p < Pages; p++)
        {
            Space.AtomicAdd(counters + ((ulong)p * Page), 10); // a CPU write revokes the device's access
        }

        Assert.Equal(0, Mirror.CountExclusive(counters, Pages * Page));
        var again = Mirror.Run(batch);

        Assert.Equal(Pages, again.Completed);
        Assert.True(again.DeviceFaults >= Pages, $"expected the revoked pages to be granted again, saw {again.DeviceFaults} device faults");
        for (var p = 0; p < Pages; p++)
        {
            Assert.Equal(12, Space.Read<int>(counters + ((ulong)p * Page)));
        }

        AssertCleanTeardown();
    }

    [DeviceFact]
    public void PreparedBatch_RunningOnAnotherThread_RefusesASecondRun_AndLosesNothing()
    {
        var counter = Space.Map(Page, Protection.ReadWrite);
        using var batch = Mirror.Prepare([.. Enumerable.Repeat(new AtomicOp(counter, AtomicKind.Add, 1), 20_000)]);
        var runsOnOtherThread = 0;
        var runsHere = 0;
        var refusals = 0;
        Exception? otherFailure = null;
        using var stop = new ManualResetEventSlim();
        var other = new Thread(() =>
        {
            try
            {
                while (!stop.IsSet)
                {
                    try
                    {
                        if (Mirror.Run(batch).Completed != batch.Count)
                        {
                            throw new InvalidOperationException("a run completed fewer ops than the batch has");
                        }

                        Interlocked.Increment(ref runsOnOtherThread);
                    }
                    catch (InvalidOperationException e) when (e.Message.Contains("already running", StringComparison.Ordinal))
                    {
                        // This thread's turn came while the test thread held the batch: refused the same way.
                    }
                }
            }
            catch (Exception e)
            {
                otherFailure = e;
            }
        });
        other.Start();
        var deadline = DateTime.UtcNow + Bound;
        try
        {
            // Keep trying until a run was refused (the other thread holds the batch most of the time).
            while (refusals == 0 && DateTime.UtcNow < deadline)
            {
                try
                {
                    Assert.Equal(batch.Count, Mirror.Run(batch).Completed);
                    runsHere++;
                }
                catch (InvalidOperationException e) when (e.Message.Contains("already running", StringComparison.Ordinal))
                {
                    refusals++;
                }
            }
        }
        finally
        {
            stop.Set();
            other.Join();
        }

        Assert.Null(otherFailure);
        Assert.True(refusals > 0, "no second run was refused while the other thread ran the batch");
        Assert.Equal((runsOnOtherThread + runsHere) * batch.Count, Space.Read<int>(counter));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void PreparedBatch_Dispose_WaitsForTheRunInProgress()
    {
        var counter = Space.Map(Page, Protection.ReadWrite);
        var batch = Mirror.Prepare([.. Enumerable.Repeat(new AtomicOp(counter, AtomicKind.Add, 1), 400_000)]);
        BatchResult? result = null;
        Exception? failure = null;
        var runner = new Thread(() =>
        {
            try
            {
                result = Mirror.Run(batch);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        runner.Start();
        var deadline = DateTime.UtcNow + Bound;
        while (!batch.IsRunning && runner.IsAlive && DateTime.UtcNow < deadline)
        {
            Thread.Yield(); // until the run holds the batch
        }

        Assert.True(batch.IsRunning, "the run was over before Dispose was called: nothing to wait for");
        batch.Dispose(); // must wait for the run: the kernel is using the batch's memory
        runner.Join();

        Assert.Null(failure);
        Assert.Equal(batch.Count, result?.Completed);
        Assert.Equal(batch.Count, Space.Read<int>(counter));
        Assert.Throws<ObjectDisposedException>(() => Mirror.Run(batch));
        batch.Dispose(); // twice is harmless
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void PreparedBatch_FromANotifierCallbackInsideItsRun_RefusesRunAndDispose()
    {
        // The run grants its page (the device fault) on the calling thread, firing Exclusive to this notifier: a
        // callback there is inside the run, and must neither start a nested run nor free the batch under it.
        var counter = Space.Map(Page, Protection.ReadWrite);
        using var batch = Mirror.Prepare([new AtomicOp(counter, AtomicKind.Add, 1)]);
        var reentry = new ReenteringNotifier(batch);
        using (Space.InsertIntervalNotifier(reentry, counter, Page))
        {
            Assert.Equal(1, Mirror.Run(batch).Completed);
        }

        Assert.True(reentry.Calls > 0, "the run fired no notifier callback to re-enter from");
        Assert.Equal(reentry.Calls, reentry.RunsRefused);
        Assert.Equal(reentry.Calls, reentry.DisposalsRefused);
        Assert.Equal(1, Space.Read<int>(counter));
        Assert.Equal(1, Mirror.Run(batch).Completed); // still usable afterwards
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void PreparedBatch_AfterTheDevicePageTableGrew_StillRunsExactly()
    {
        const int Pages = 1100; // more slots than the mirror's first device page table holds
        var area = Space.Map(Pages * Page, Protection.ReadWrite);
        using var batch = Mirror.Prepare([new AtomicOp(area, AtomicKind.Add, 1), new AtomicOp(area + Page, AtomicKind.Add, 1)]);
        Assert.Equal(2, Mirror.Run(batch).Completed);

        // Slots for every other page: the table is copied into a larger one and swapped under the prepared batch.
        Assert.Equal(Pages, Mirror.Run([.. Enumerable.Range(0, Pages).Select(p => new AtomicOp(area + ((ulong)p * Page), AtomicKind.Add, 1))]).Completed);
        Assert.Equal(2, Mirror.Run(batch).Completed);

        Assert.Equal(3, Space.Read<int>(area));
        Assert.Equal(3, Space.Read<int>(area + Page));
        Assert.Equal(1, Space.Read<int>(area + (2 * Page)));
        AssertCleanTeardown();
    }

    /// <summary>Tries to run and to dispose the batch from inside each callback; counts the refusals.</summary>
    private sealed class ReenteringNotifier(PreparedBatch batch) : MmuIntervalNotifier
    {
        public int Calls { get; private set; }

        public int RunsRefused { get; private set; }

        public int DisposalsRefused { get; private set; }

        protected override void Invalidate(in NotifierRange range)
        {
            Calls++;
            try
            {
                batch.Mirror.Run(batch);
            }
            catch (InvalidOperationException e) when (e.Message.Contains("already running", StringComparison.Ordinal))
            {
                RunsRefused++;
            }

            try
            {
                batch.Dispose();
            }
            catch (InvalidOperationException e) when (e.Message.Contains("inside its own run", StringComparison.Ordinal))
            {
                DisposalsRefused++;
            }
        }
    }

    [DeviceFact]
    public void PreparedBatch_OutlivingItsMirrorAndDevice_DisposesCleanly()
    {
        var device = ExclusiveDevice.Open(Fixture.Kind);
        var space = Own(new AddressSpace(Pool));
        var mirror = MirrorOn(device, space);
        var counter = space.Map(Page, Protection.ReadWrite);
        var batch = mirror.Prepare([new AtomicOp(counter, AtomicKind.Add, 1)]);
        Assert.Equal(1, mirror.Run(batch).Completed);

        mirror.Dispose();
        Assert.Throws<ObjectDisposedException>(() => mirror.Run(batch));
        device.Dispose();
        batch.Dispose();

        Assert.Equal(1, space.Read<int>(counter));
        AssertCleanTeardown();
    }
}
