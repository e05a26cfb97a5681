namespace GpuExclusive.Tests.Device;

/// <summary>
/// The device page table's growth (docs/architecture.md, "lock order"): a grant that needs a new slot past the table's
/// size quiesces the device for the swap, and must do so holding no mirror lock — the thread running a batch needs that
/// lock to service the faults of the launch the quiesce waits for.
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    [DeviceFact]
    public void MakeExclusive_PastTheInitialTable_WhileABatchServicesFaults_GrowsTheTable_AndTheDeviceStaysHealthy()
    {
        const int HotPages = 64;
        const int TotalPages = 1300; // past the 1024 slots a device page table starts with
        const int Rounds = 4;
        // A short deadline: the deadlock this guards against surfaced as a failure of a healthy device at the deadline.
        var device = Own(ExclusiveDevice.Open(new EngineSettings { Accelerator = Fixture.Kind, DeviceTimeoutMilliseconds = 3000 }));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var round = 0; round < Rounds && clock.Elapsed < TimeSpan.FromSeconds(15); round++)
        {
            using var space = new AddressSpace(Pool);
            using var mirror = MirrorOn(device, space);
            var buffer = space.Map(TotalPages * Page, Protection.ReadWrite);
            // Large batches go to one-shot launches, small ones to the resident kernel: a quiesce waits for either.
            var large = Enumerable.Range(0, 50_000).Select(i => new AtomicOp(buffer + ((ulong)(i % HotPages) * Page), AtomicKind.Add, 1)).ToArray();
            var small = large[..512];
            var stop = 0;
            var deviceAdds = 0L;
            var batches = Start(() =>
            {
                for (var b = 0; Volatile.Read(ref stop) == 0; b++)
                {
                    deviceAdds += mirror.Run(b % 2 == 0 ? large : small).Completed;
                }

                return true;
            });
            var cpu = Start(() =>
            {
                // CPU touches of the batches' pages: revocations, and so device faults the batch thread services.
                var adds = 0L;
                for (var k = 0; Volatile.Read(ref stop) == 0; k++)
                {
                    space.AtomicAdd(buffer + ((ulong)(k % HotPages) * Page), 1);
                    adds++;
                }

                return adds;
            });

            var granted = Start(() =>
            {
                var pages = 0;
                for (var p = HotPages; p < TotalPages && !batches.IsCompleted && !cpu.IsCompleted; p++)
                {
                    pages += mirror.MakeExclusive(buffer + ((ulong)p * Page), Page);
                }

                return pages;
            });

            AssertFinishes(granted, "the grants past the initial table");
            Volatile.Write(ref stop, 1);
            AssertFinishes(batches, "the batch thread");
            AssertFinishes(cpu, "the CPU thread");
            Assert.Null(device.Executor.Failure);
            Assert.Null(batches.Exception?.InnerException);
            Assert.Null(cpu.Exception?.InnerException);
            Assert.Null(granted.Exception?.InnerException);
            Assert.Equal(TotalPages - HotPages, granted.Result);
            var sum = Enumerable.Range(0, HotPages).Sum(p => (long)space.Read<int>(buffer + ((ulong)p * Page)));
            Assert.Equal(deviceAdds + cpu.Result, sum);
        }

        AssertCleanTeardown();
    }

    [DeviceFact]
    public void DeviceReads_AndOneGrant_PastTheTable_GrowIt_AndMapEveryPage()
    {
        // Device reads of 1100 pages need more slots than the first table has (a growth between two faults), and then
        // one grant of 2100 pages finds the table full part way: it maps what fits, grows the table with its frames
        // released, and grants the rest.
        const int ReadPages = 1100;
        const int GrantPages = 2100;
        var read = MapIota(ReadPages);
        var seen = new int[ReadPages * (int)Page / sizeof(int)];
        Assert.Equal(DeviceStatus.Ok, Mirror.Read(read, System.Runtime.InteropServices.MemoryMarshal.AsBytes(seen.AsSpan())));
        Assert.Equal(Enumerable.Range(0, seen.Length), seen);

        var granted = Space.Map(GrantPages * Page, Protection.ReadWrite);
        Assert.Equal(GrantPages, Mirror.MakeExclusive(granted, GrantPages * Page));
        Assert.Equal(GrantPages, Mirror.CountExclusive(granted, GrantPages * Page));
        var ops = Enumerable.Range(0, GrantPages).Select(p => new AtomicOp(granted + ((ulong)p * Page), AtomicKind.Add, p)).ToArray();
        var result = Mirror.Run(ops);
        Assert.Equal(GrantPages, result.Completed);
        Assert.Equal(0, result.DeviceFaults);
        Assert.Equal(GrantPages - 1, Space.Read<int>(granted + ((GrantPages - 1) * Page)));
        AssertCleanTeardown();
    }
}
