using System.Runtime.InteropServices;
using GpuExclusive.Diagnostics;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// The device-exclusive contract (docs/architecture.md; issue 3), written once and run by one sealed subclass per backend
/// and page placement: every case holds whether the device works on its pages in place or in its own memory.
/// </summary>
/// <remarks>
/// Each test builds its own pool and address space, mirrors it on the shared device, and ends with
/// <see cref="AssertCleanTeardown"/>: the invariants (docs/architecture.md) hold, and once everything is disposed every frame
/// is back in the pool. Concurrency tests are bounded by <see cref="Bound"/>: a deadlock fails the test, it never hangs
/// the run.
/// </remarks>
public abstract partial class DeviceExclusiveContract : IDisposable
{
    /// <summary>Bytes per page.</summary>
    protected const ulong Page = PagePool.PageSize;

    /// <summary>The buffer of the Linux selftests: HMM_BUFFER_SIZE = 1024 pages.</summary>
    protected const int SelftestPages = 1024;

    /// <summary>How long any wait in this suite may take before it counts as a deadlock.</summary>
    protected static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private readonly DeviceFixture _fixture;
    private readonly List<IDisposable> _owned = [];
    private bool _tornDown;

    protected DeviceExclusiveContract(DeviceFixture fixture, PagePlacement placement = PagePlacement.InPlace)
    {
        _fixture = fixture;
        Placement = placement;
        Pool = new PagePool(4 * SelftestPages);
        Space = new AddressSpace(Pool);
        Mirror = MirrorOn(Device, Space);
    }

    /// <summary>Where this class's mirrors place the pages their device holds.</summary>
    protected PagePlacement Placement { get; }

    /// <summary>A mirror of <paramref name="space"/> on <paramref name="device"/> with this class's <see cref="Placement"/>.</summary>
    protected DeviceMirror MirrorOn(ExclusiveDevice device, AddressSpace space) => device.Mirror(space, Placement);

    /// <summary>The class's shared device.</summary>
    protected ExclusiveDevice Device => _fixture.Device;

    /// <summary>This test's pool: 4096 frames.</summary>
    protected PagePool Pool { get; }

    /// <summary>This test's address space.</summary>
    protected AddressSpace Space { get; }

    /// <summary><see cref="Device"/>'s mirror of <see cref="Space"/>.</summary>
    protected DeviceMirror Mirror { get; }

    /// <summary>The fixture, for tests that need a second device or one of their own.</summary>
    protected DeviceFixture Fixture => _fixture;

    [DeviceFact]
    public void Open_ReportsTheKindReallyCreated()
    {
        Assert.Equal(_fixture.Kind, Device.Kind);
        Assert.False(string.IsNullOrWhiteSpace(Device.Name));

        AssertCleanTeardown();
    }

    [DeviceFact]
    public void Mirror_SecondOfTheSameSpace_ThrowsInvalidOperation()
    {
        Assert.Throws<InvalidOperationException>(() => MirrorOn(Device, Space));

        AssertCleanTeardown();
    }

    /// <summary>Registers something for disposal, in reverse order, before <see cref="Space"/> goes.</summary>
    protected T Own<T>(T disposable)
        where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    /// <summary>Maps a private read-write buffer of <paramref name="pages"/> pages holding <c>int[i] = i</c>.</summary>
    protected ulong MapIota(int pages)
    {
        var address = Space.Map((ulong)pages * Page, Protection.ReadWrite);
        var values = new int[pages * (int)Page / sizeof(int)];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = i;
        }

        Space.Write(address, MemoryMarshal.AsBytes(values.AsSpan()));
        return address;
    }

    /// <summary>The ints of <c>[address, address + pages)</c> as the CPU sees them.</summary>
    protected static int[] CpuInts(AddressSpace space, ulong address, int pages)
    {
        var values = new int[pages * (int)Page / sizeof(int)];
        space.Read(address, MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    /// <summary>Runs <paramref name="work"/> on its own thread and fails the test if it does not finish within <see cref="Bound"/>.</summary>
    protected static T Bounded<T>(string what, Func<T> work)
    {
        var task = Task.Factory.StartNew(work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Assert.True(task.Wait(Bound), $"{what} did not finish within {Bound.TotalSeconds} s: deadlock or livelock");
        return task.Result;
    }

    /// <summary>Starts <paramref name="work"/> on its own thread.</summary>
    protected static Task<T> Start<T>(Func<T> work) =>
        Task.Factory.StartNew(work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>Waits for <paramref name="task"/> within <see cref="Bound"/>, failing the test otherwise.</summary>
    protected static void AssertFinishes(Task task, string what)
    {
        try
        {
            Assert.True(task.Wait(Bound), $"{what} did not finish within {Bound.TotalSeconds} s: deadlock or livelock");
        }
        catch (AggregateException)
        {
            // the caller inspects task.Exception
        }
    }

    /// <summary>The invariants (docs/architecture.md), checked now (mid-test).</summary>
    protected void AssertInvariants() => InvariantChecker.Check(Pool);

    /// <summary>
    /// The end of every test: the invariants (docs/architecture.md) hold (the checker also compares every live mirror's Atomic
    /// device PTEs with the CPU PTEs), and after disposing mirror, spaces and anything owned, every frame is free.
    /// </summary>
    protected void AssertCleanTeardown()
    {
        InvariantChecker.Check(Pool);
        _tornDown = true;
        DisposeAll();
        Assert.Equal(Pool.Capacity, Pool.FreePages);
        InvariantChecker.Check(Pool);
        Pool.Dispose();
    }

    private void DisposeAll()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            _owned[i].Dispose();
        }

        _owned.Clear();
        Mirror.Dispose();
        Space.Dispose();
    }

    public void Dispose()
    {
        if (!_tornDown)
        {
            // The test failed before its teardown: release what it can without hiding the real failure.
            try
            {
                DisposeAll();
                Pool.Dispose();
            }
            catch (Exception ex) when (ex is InvalidOperationException or ObjectDisposedException)
            {
            }
        }

        GC.SuppressFinalize(this);
    }
}
