using GpuExclusive.Diagnostics;
using GpuExclusive.Tests.Device;

namespace GpuExclusive.Tests.Model;

/// <summary>Minimal reproducers of divergences the model-based test found (each one line of the shrunk sequence).</summary>
[Collection(DeviceCollection.Name)]
public sealed class ModelFindingsTests(CpuAcceleratorFixture fixture) : IClassFixture<CpuAcceleratorFixture>
{
    private const ulong Page = PagePool.PageSize;

    /// <summary>
    /// After ClearSoftDirty, a page first touched by a <b>read</b> must not get a writable PTE without the soft-dirty bit:
    /// the next write would then not fault and the page would never become soft-dirty (Linux maps it read-only: the zero
    /// page for anonymous memory, write-notify for shared memory with soft-dirty tracking on).
    /// Found by the model: Map RW, ClearSoftDirty, Read, then a write (CPU, or a grant) leaves SoftDirty false.
    /// </summary>
    [Fact]
    public void SoftDirty_ReadFaultAfterClear_ThenGrantAndDeviceAtomics_IsSoftDirty()
    {
        using var pool = new PagePool(16, lockMemory: false);
        using (var space = new AddressSpace(pool))
        using (var mirror = fixture.Device.Mirror(space))
        {
            var address = space.Map(Page, Protection.ReadWrite);
            space.ClearSoftDirty();
            Assert.Equal(0, space.Read<int>(address)); // read fault: the PTE comes back writable but not soft-dirty
            var result = mirror.Run([new AtomicOp(address, AtomicKind.Add, 5)]); // grant (docs/architecture.md, "the grant path": fault in for write), device writes
            Assert.Equal(1, result.Completed);
            Assert.Equal(PageState.DeviceExclusive, space.Inspect(address).State);

            // The device wrote the page after ClearSoftDirty: Linux reports it soft-dirty (the grant's FOLL_WRITE fault
            // marks it; a writable PTE in a tracked VMA is always soft-dirty there).
            Assert.True(space.Inspect(address).SoftDirty, $"granted and written by the device after ClearSoftDirty but not soft-dirty: {space.Inspect(address)}");
            Assert.Equal(5, space.Read<int>(address));
            Assert.True(space.Inspect(address).SoftDirty, $"restored after a device write but not soft-dirty: {space.Inspect(address)}");
            InvariantChecker.Check(pool);
        }

        Assert.Equal(pool.Capacity, pool.FreePages);
    }

    [Theory]
    [InlineData(Sharing.Private)]
    [InlineData(Sharing.Shared)]
    public void SoftDirty_ReadFaultAfterClear_ThenWrite_IsSoftDirty(Sharing sharing)
    {
        using var pool = new PagePool(16, lockMemory: false);
        using (var space = new AddressSpace(pool))
        {
            var address = space.Map(Page, Protection.ReadWrite, sharing);
            space.ClearSoftDirty();
            Assert.Equal(0, space.Read<int>(address));
            space.Write(address, 42);

            Assert.True(space.Inspect(address).SoftDirty, $"written after ClearSoftDirty but not soft-dirty: {space.Inspect(address)}");
            InvariantChecker.Check(pool);
        }

        Assert.Equal(pool.Capacity, pool.FreePages);
    }
}
