using System.Runtime.CompilerServices;
using GpuExclusive.Devices;
using Microsoft.Extensions.Logging;

namespace GpuExclusive.Tests.Native;

/// <summary>
/// The process-wide pinned-host registry over a fake driver: one registration per range however many devices bind
/// it, unregistered by the last lease in any order, inside a primary context the registry retains; overlaps refused;
/// release errors logged, never thrown.
/// </summary>
public sealed class PinnedHostRegistryTests
{
    private const int Page = 4096;
    private static readonly HostRange Pool = new(0x10_0000, 16 * Page);

    private readonly FakeHostRegistrar _driver = new();
    private readonly RecordingLogger _log = new();
    private readonly PinnedHostRegistry _registry;

    public PinnedHostRegistryTests() => _registry = new PinnedHostRegistry(_driver);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TwoLeasesOnOneRange_RegisterOnce_AndTheLastOneUnregisters_InEitherOrder(bool firstReleasedFirst)
    {
        var first = _registry.Acquire(Pool, device: 0, _log);
        var second = _registry.Acquire(Pool, device: 0, _log);

        Assert.Equal(1, _driver.Registers);
        Assert.Equal(2, _registry.LeasesOn(Pool));
        Assert.Equal(1, _driver.Retained(0));

        (firstReleasedFirst ? first : second).Dispose();

        Assert.Equal(0, _driver.Unregisters);
        Assert.True(_driver.IsRegistered(Pool));
        Assert.Equal(1, _registry.LeasesOn(Pool));

        (firstReleasedFirst ? second : first).Dispose();

        Assert.Equal(1, _driver.Unregisters);
        Assert.False(_driver.IsRegistered(Pool));
        Assert.Equal(0, _registry.Count);
        Assert.Equal(0, _driver.Retained(0));
        Assert.Equal(_driver.RetainCalls, _driver.ReleaseCalls);
        Assert.Empty(_log.Problems);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TwoDevices_ShareOneRegistration_MadeInTheFirstDevicesPrimaryContext_InEitherOrder(bool firstDeviceReleasedFirst)
    {
        var onFirst = _registry.Acquire(Pool, device: 0, _log);
        var onSecond = _registry.Acquire(Pool, device: 1, _log);

        Assert.Equal(1, _driver.Registers);
        Assert.Equal(1, _driver.Retained(0));
        Assert.Equal(0, _driver.Retained(1)); // the second device only counts

        (firstDeviceReleasedFirst ? onFirst : onSecond).Dispose();

        // Whichever device went first, the registration and the context it lives in are still there.
        Assert.True(_driver.IsRegistered(Pool));
        Assert.Equal(1, _driver.Retained(0));

        (firstDeviceReleasedFirst ? onSecond : onFirst).Dispose();

        // The fake refuses an unregister outside the registering context: this one was made in device 0's.
        Assert.Equal(1, _driver.Unregisters);
        Assert.Equal(0, _driver.Retained(0));
        Assert.Equal(0, _driver.RetainCalls - _driver.ReleaseCalls);
        Assert.Empty(_log.Problems);
    }

    [Fact]
    public void DisposingALeaseTwice_DropsOneHoldOnly()
    {
        var first = _registry.Acquire(Pool, device: 0, _log);
        var second = _registry.Acquire(Pool, device: 0, _log);

        first.Dispose();
        first.Dispose();

        Assert.True(_driver.IsRegistered(Pool));
        Assert.Equal(1, _registry.LeasesOn(Pool));
        Assert.True(first.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => first.DevicePointer(FakeHostRegistrar.ContextOf(0)));

        second.Dispose();
        second.Dispose();

        Assert.Equal(1, _driver.Unregisters);
        Assert.Equal(0, _registry.Count);
        Assert.Empty(_log.Problems);
    }

    [Theory]
    [InlineData(4 * Page, 16 * Page)]  // starts inside, ends past
    [InlineData(-4 * Page, 8 * Page)]  // starts before, ends inside
    [InlineData(0, 8 * Page)]          // same start, shorter
    [InlineData(0, 32 * Page)]         // same start, longer
    [InlineData(Page, 2 * Page)]       // strictly inside
    [InlineData(-Page, 18 * Page)]     // strictly around
    public void OverlappingRange_IsRefused_NamingBothRanges_AndChangesNothing(long offset, long bytes)
    {
        using var lease = _registry.Acquire(Pool, device: 0, _log);
        var overlapping = new HostRange((nint)(Pool.Pointer + offset), bytes);

        var refused = Assert.Throws<InvalidOperationException>(() => _registry.Acquire(overlapping, device: 0, _log));

        Assert.Contains(overlapping.ToString(), refused.Message, StringComparison.Ordinal);
        Assert.Contains(Pool.ToString(), refused.Message, StringComparison.Ordinal);
        Assert.Equal(1, _driver.Registers);
        Assert.Equal(1, _registry.Count);
        Assert.Equal(1, _registry.LeasesOn(Pool));
        Assert.Equal(0, _registry.LeasesOn(overlapping));
        Assert.Equal(1, _driver.RetainCalls);
    }

    [Fact]
    public void AdjacentRanges_AreSeparateRegistrations()
    {
        var before = new HostRange(Pool.Pointer - Page, Page);
        var after = new HostRange((nint)(Pool.Pointer + Pool.Bytes), Page);

        using var pool = _registry.Acquire(Pool, device: 0, _log);
        using var below = _registry.Acquire(before, device: 0, _log);
        using var above = _registry.Acquire(after, device: 0, _log);

        Assert.Equal(3, _driver.Registers);
        Assert.Equal(3, _registry.Count);
        Assert.Equal(1, _driver.RetainCalls); // one primary context retain for all of a device's ranges
    }

    [Fact]
    public void TheDevicesPrimaryContext_IsReleasedWithItsLastRange()
    {
        var other = new HostRange(0x80_0000, Page);
        var pool = _registry.Acquire(Pool, device: 0, _log);
        var small = _registry.Acquire(other, device: 0, _log);

        pool.Dispose();
        Assert.Equal(1, _driver.Retained(0));
        Assert.True(_driver.IsRegistered(other));

        small.Dispose();
        Assert.Equal(0, _driver.Retained(0));
        Assert.Equal(2, _driver.Unregisters);
    }

    [Fact]
    public void FailingUnregister_IsLogged_DoesNotThrow_AndReleasesTheContext()
    {
        var lease = _registry.Acquire(Pool, device: 0, _log);
        _driver.FailUnregister = FakeHostRegistrar.InvalidValue;

        lease.Dispose();

        var warning = Assert.Single(_log.Problems);
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Equal(212, warning.EventId);
        Assert.Contains("fake cuMemHostUnregister failed", warning.Message, StringComparison.Ordinal);
        Assert.Contains(Pool.ToString(), warning.Message, StringComparison.Ordinal);
        Assert.Equal(0, _registry.Count);
        Assert.Equal(0, _driver.Retained(0));
    }

    [Fact]
    public void RegistrarThrowingOnRelease_IsLogged_DoesNotThrow_AndLeavesTheRegistryConsistent()
    {
        var lease = _registry.Acquire(Pool, device: 0, _log);
        _driver.ThrowOnUnregister = true;

        lease.Dispose();

        var error = Assert.Single(_log.Problems);
        Assert.Equal(LogLevel.Error, error.Level);
        Assert.Equal(214, error.EventId);
        Assert.IsType<EntryPointNotFoundException>(error.Exception);
        Assert.Equal(0, _registry.Count);
        Assert.Equal(0, _driver.Retained(0)); // released even though the unregister threw
    }

    [Fact]
    public void FailingRegister_ThrowsWithTheDriversError_LeavesNoEntry_AndTheNextAcquireRegisters()
    {
        _driver.FailNextRegister = FakeHostRegistrar.OutOfMemory;

        var failed = Assert.Throws<InvalidOperationException>(() => _registry.Acquire(Pool, device: 0, _log));

        Assert.Contains("fake cuMemHostRegister failed with 2", failed.Message, StringComparison.Ordinal);
        Assert.Contains(Pool.ToString(), failed.Message, StringComparison.Ordinal);
        Assert.Equal(0, _registry.Count);
        Assert.Equal(0, _driver.Retained(0)); // the context retained for it is released again

        using var lease = _registry.Acquire(Pool, device: 0, _log);

        Assert.Equal(1, _driver.Registers);
        Assert.True(_driver.IsRegistered(Pool));
        Assert.Equal(1, _registry.LeasesOn(Pool));
    }

    [Fact]
    public void FailingRegister_KeepsThePrimaryContextTheDevicesOtherRangesNeed()
    {
        using var other = _registry.Acquire(new HostRange(0x80_0000, Page), device: 0, _log);
        _driver.FailNextRegister = FakeHostRegistrar.OutOfMemory;

        Assert.Throws<InvalidOperationException>(() => _registry.Acquire(Pool, device: 0, _log));

        Assert.Equal(1, _driver.Retained(0));
        Assert.Equal(0, _driver.ReleaseCalls);
    }

    [Fact]
    public void FailingRetain_Throws_AndTheNextAcquireTriesAgain()
    {
        _driver.FailNextRetain = FakeHostRegistrar.InvalidValue;

        var failed = Assert.Throws<InvalidOperationException>(() => _registry.Acquire(Pool, device: 0, _log));

        Assert.Contains("primary context", failed.Message, StringComparison.Ordinal);
        Assert.Equal(0, _registry.Count);
        Assert.Equal(0, _driver.Registers);

        using var lease = _registry.Acquire(Pool, device: 0, _log);
        Assert.True(_driver.IsRegistered(Pool));
    }

    [Fact]
    public void DevicePointer_IsTheDriversAddress_InTheContextAsked()
    {
        using var lease = _registry.Acquire(Pool, device: 0, _log);
        const nint AcceleratorContext = 0x5555;

        var address = lease.DevicePointer(AcceleratorContext);

        Assert.Equal((long)Pool.Pointer + FakeHostRegistrar.DeviceOffset, (long)address);
        Assert.Equal([AcceleratorContext], _driver.DevicePointerContexts);
    }

    [Theory]
    [InlineData(0L, 4096L)]
    [InlineData(0x10_0000L, 0L)]
    [InlineData(0x10_0000L, -4096L)]
    [InlineData(-4096L, 8192L)] // wraps around the end of the address space
    public void InvalidRange_IsRefused_BeforeTheDriverIsCalled(long pointer, long bytes)
    {
        Assert.ThrowsAny<ArgumentException>(() => _registry.Acquire(new HostRange((nint)pointer, bytes), device: 0, _log));

        Assert.Equal(0, _driver.RetainCalls);
        Assert.Equal(0, _registry.Count);
    }

    [Fact]
    public void ConcurrentAcquireAndDispose_LeaveNothingRegistered_WithMatchedCalls()
    {
        const int Threads = 8;
        const int Rounds = 4000;
        HostRange[] ranges = [Pool, new(0x80_0000, Page)];
        using var start = new Barrier(Threads);

        var workers = Enumerable.Range(0, Threads).Select(t => TestThread.Start(() =>
        {
            var random = new Random(t);
            var held = new List<PinnedHostLease>();
            start.SignalAndWait();
            for (var round = 0; round < Rounds; round++)
            {
                held.Add(_registry.Acquire(ranges[random.Next(ranges.Length)], device: random.Next(2), _log));
                if (held.Count > 1 || random.Next(2) == 0)
                {
                    var index = random.Next(held.Count);
                    held[index].Dispose();
                    if (random.Next(4) == 0)
                    {
                        held[index].Dispose(); // a second dispose must drop nothing more
                    }

                    held.RemoveAt(index);
                }
            }

            foreach (var lease in held)
            {
                lease.Dispose();
            }
        })).ToList();

        foreach (var worker in workers)
        {
            Assert.True(worker.Join(TimeSpan.FromSeconds(60)), "a worker hung");
        }

        Assert.Equal(0, _driver.RegisteredCount);
        Assert.Equal(0, _registry.Count);
        Assert.True(_driver.Registers > ranges.Length, $"only {_driver.Registers} registrations: the ranges were never released and re-registered");
        Assert.Equal(_driver.Registers, _driver.Unregisters);
        Assert.Equal(_driver.RetainCalls, _driver.ReleaseCalls);
        Assert.Equal(0, _driver.Retained(0));
        Assert.Equal(0, _driver.Retained(1));
        Assert.Empty(_log.Problems);
    }

    [Fact]
    public void ALeaseNeverDisposed_IsReleasedByItsFinalizer()
    {
        AcquireAndDrop(_registry, _log);

        GC.Collect();
        GC.WaitForPendingFinalizers();

        Assert.Equal(1, _driver.Registers);
        Assert.Equal(1, _driver.Unregisters);
        Assert.Equal(0, _registry.Count);
        Assert.Equal(0, _driver.Retained(0));
    }

    [Fact]
    public void TheSharedRegistry_LoadsNoDriverUntilItIsUsed()
    {
        // This machine may have no CUDA driver at all: reaching the shared registry must not look for one.
        var registry = PinnedHostRegistry.Shared;

        Assert.Same(registry, PinnedHostRegistry.Shared);
        Assert.Equal(0, registry.LeasesOn(new HostRange(0x1000, Page)));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AcquireAndDrop(PinnedHostRegistry registry, ILogger logger) => registry.Acquire(Pool, device: 0, logger);
}
