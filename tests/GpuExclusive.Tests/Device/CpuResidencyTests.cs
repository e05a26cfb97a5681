namespace GpuExclusive.Tests.Device;

/// <summary>
/// The resident kernel's settings and its CPU-accelerator rule: on ILGPU's CPU accelerator a resident kernel polls on a
/// host core, so one device's residency ends another's.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class CpuResidencyTests(CpuAcceleratorFixture fixture) : IClassFixture<CpuAcceleratorFixture>
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
        var first = fixture.Device;
        var second = fixture.SecondDevice;
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

        // Ended by the second device, not by its idle timer: the default idle time is 2 ms, so check the order too.
        Assert.False(first.Executor.IsResident, "two resident kernels poll host cores at once");
        Assert.Equal(1, space.Read<int>(a));
        Assert.Equal(1, space.Read<int>(b));
    }
}
