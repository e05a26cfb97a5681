namespace GpuExclusive.Tests.Device;

/// <summary>
/// The resident kernel's settings and its CPU-accelerator rule: on ILGPU's CPU accelerator a resident kernel polls on a
/// host core, so one device's residency ends another's.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class CpuResidencyTests
{
    private const ulong Page = PagePool.PageSize;

    [Fact]
    public void ResidentBatchOpsZero_GivesEveryBatchALaunch()
    {
        const int Batches = 10;
        using var device = ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, ResidentBatchOps = 0 });
        using var pool = new PagePool(8, lockMemory: false);
        using var space = new AddressSpace(pool);
        using var mirror = device.Mirror(space);
        var counter = space.Map(Page, Protection.ReadWrite);
        var launches = device.Executor.Launches;

        for (var i = 0; i < Batches; i++)
        {
            Assert.Equal(1, mirror.Run([new AtomicOp(counter, AtomicKind.Add, 1)]).Completed);
        }

        Assert.Equal(Batches, space.Read<int>(counter));
        Assert.False(device.Executor.IsResident);
        Assert.Equal(0, device.Executor.ResidentLaunches);
        Assert.True(device.Executor.Launches - launches >= Batches, $"{device.Executor.Launches - launches} launches for {Batches} batches");
    }

    [Fact]
    public void OnTheCpuAccelerator_ASecondDevicesResidentKernel_EndsTheFirst()
    {
        // Idle times long enough that only the second device can end the first one's residency.
        using var first = ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, ResidentIdleMicroseconds = 10_000_000 });
        using var second = ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, ResidentIdleMicroseconds = 10_000_000 });
        using var pool = new PagePool(8, lockMemory: false);
        using var space = new AddressSpace(pool);
        using var firstMirror = first.Mirror(space);
        using var secondMirror = second.Mirror(space);
        var a = space.Map(Page, Protection.ReadWrite);
        var b = space.Map(Page, Protection.ReadWrite);

        Assert.Equal(1, firstMirror.Run([new AtomicOp(a, AtomicKind.Add, 1)]).Completed);
        Assert.True(first.Executor.IsResident, "a small batch did not leave the resident kernel up");
        Assert.Equal(1, secondMirror.Run([new AtomicOp(b, AtomicKind.Add, 1)]).Completed);

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (first.Executor.IsResident && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(1);
        }

        Assert.False(first.Executor.IsResident, "two resident kernels poll host cores at once");
        Assert.Equal(1, space.Read<int>(a));
        Assert.Equal(1, space.Read<int>(b));
    }

    [Fact]
    public void AKernelThatLeavesAfterEveryBatch_RacingTheNextRing_LosesAndRepeatsNothing()
    {
        // One microsecond of idle polls: the kernel closes its doorbell right after nearly every batch, racing the host's
        // next ring; a ring that loses must launch a new kernel and ring again, a ring that wins must be served.
        const int Threads = 2;
        const int BatchesPerThread = 300;
        using var device = ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, ResidentIdleMicroseconds = 1 });
        using var pool = new PagePool(8, lockMemory: false);
        using var space = new AddressSpace(pool);
        using var mirror = device.Mirror(space);
        var counter = space.Map(Page, Protection.ReadWrite);

        var workers = Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(
            () =>
            {
                var random = new Random(t);
                for (var i = 0; i < BatchesPerThread; i++)
                {
                    Assert.Equal(1, mirror.Run([new AtomicOp(counter, AtomicKind.Add, 1)]).Completed);
                    Thread.SpinWait(random.Next(0, 4000)); // from nothing to a few microseconds between batches
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default)).ToArray();

        Assert.True(WaitAll(workers, TimeSpan.FromSeconds(60)), "the batches did not finish within 60 s");
        Assert.All(workers, w => Assert.Null(w.Exception));
        Assert.Equal(Threads * BatchesPerThread, space.Read<int>(counter));
        Assert.True(device.Executor.ResidentLaunches > 1, "the kernel never left: the test proved nothing");
    }

    // Worker threads, not async code: nothing here can deadlock on a synchronization context.
    private static bool WaitAll(Task[] tasks, TimeSpan timeout)
    {
        try
        {
            return Task.WaitAll(tasks, timeout);
        }
        catch (AggregateException)
        {
            return true; // finished; the caller looks at each task's exception
        }
    }
}
