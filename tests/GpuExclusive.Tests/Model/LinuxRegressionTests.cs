using GpuExclusive.Diagnostics;
using GpuExclusive.Tests.Device;

namespace GpuExclusive.Tests.Model;

/// <summary>
/// Issue 6, item 4: the races Linux's device-exclusive code got wrong, each bounded (a hang fails within 20 s) and
/// ending with the invariant checks (docs/architecture.md): invariants hold, no frame stays locked, every frame back after disposal.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class LinuxRegressionTests(CpuAcceleratorFixture fixture) : IClassFixture<CpuAcceleratorFixture>
{
    private const ulong Page = PagePool.PageSize;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private ExclusiveDevice Device => fixture.Device;

    private static void RunAll(string what, params Action[] actions)
    {
        var tasks = actions.Select(a => (Action)(() =>
        {
            try
            {
                a();
            }
            catch (Exception ex)
            {
                throw new InvalidOperationException($"{what}: a thread failed", ex);
            }
        })).Select(a => Task.Factory.StartNew(a, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        var finished = Task.WaitAny(tasks.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)).ToArray(), Bound) >= 0
            && Task.WaitAll(tasks.Where(t => !t.IsFaulted).ToArray(), tasks.Any(t => t.IsFaulted) ? TimeSpan.FromSeconds(1) : Bound);
        var fault = tasks.FirstOrDefault(t => t.IsFaulted)?.Exception?.InnerException;
        if (fault is not null)
        {
            throw fault;
        }

        Assert.True(finished, $"{what} did not finish within {Bound.TotalSeconds} s: deadlock or livelock");
    }

    /// <summary>Checks the invariants with every space alive, disposes them, and checks every frame is back (#5): a frame left locked or referenced shows here.</summary>
    private static void Teardown(PagePool pool, params IDisposable[] owned)
    {
        InvariantChecker.Check(pool);
        foreach (var item in owned)
        {
            item.Dispose();
        }

        InvariantChecker.Check(pool);
        Assert.Equal(pool.Capacity, pool.FreePages);
        pool.Dispose();
    }

    /// <summary>A grant racing with munmap/MADV_DONTNEED of the same pages (the legacy code leaked a reference here).</summary>
    [Fact]
    public void GrantRacingWithDiscardAndUnmap_LeavesNoFrameLockedOrLeaked()
    {
        const int pages = 64;
        var pool = new PagePool(4 * pages, lockMemory: false);
        var space = new AddressSpace(pool);
        var mirror = Device.Mirror(space);
        var address = space.Map(pages * Page, Protection.ReadWrite);
        using var barrier = new Barrier(2);
        const int rounds = 200;

        RunAll("grant vs discard",
            () =>
            {
                for (var i = 0; i < rounds; i++)
                {
                    Assert.True(barrier.SignalAndWait(Bound), "barrier timed out");
                    mirror.MakeExclusive(address, pages * Page);
                }
            },
            () =>
            {
                for (var i = 0; i < rounds; i++)
                {
                    Assert.True(barrier.SignalAndWait(Bound), "barrier timed out");
                    space.Discard(address + (ulong)(i % 4) * Page, (pages - 4) * Page);
                }
            });
        InvariantChecker.Check(pool);

        // Now Unmap: the grant either succeeds before the unmap or fails with MemoryAccessException; nothing half-done.
        var other = space.Map(pages * Page, Protection.ReadWrite);
        RunAll("grant vs unmap",
            () =>
            {
                try
                {
                    mirror.MakeExclusive(other, pages * Page);
                }
                catch (MemoryAccessException)
                {
                }
            },
            () => space.Unmap(other + Page, (pages - 1) * Page));
        InvariantChecker.Check(pool);
        Assert.Equal(PageState.Unmapped, space.Inspect(other + Page).State);
        Assert.Equal(0, mirror.CountExclusive(other + Page, (pages - 1) * Page));
        Teardown(pool, mirror, space);
    }

    /// <summary>Many threads fault the same exclusive page at once while another thread discards it.</summary>
    [Fact]
    public void ManyThreadsFaultingAnExclusivePageWhileItIsDiscarded_AllFinish()
    {
        var pool = new PagePool(64, lockMemory: false);
        var space = new AddressSpace(pool);
        var mirror = Device.Mirror(space);
        var address = space.Map(Page, Protection.ReadWrite);
        const int threads = 6, rounds = 100;
        using var barrier = new Barrier(threads + 1);
        var actions = new List<Action>
        {
            () =>
            {
                for (var i = 0; i < rounds; i++)
                {
                    Assert.Equal(1, mirror.MakeExclusive(address, Page));
                    Assert.True(barrier.SignalAndWait(Bound), "barrier timed out");
                    space.Discard(address, Page);
                    Assert.True(barrier.SignalAndWait(Bound), "barrier timed out");
                }
            },
        };
        for (var t = 0; t < threads; t++)
        {
            actions.Add(() =>
            {
                for (var i = 0; i < rounds; i++)
                {
                    Assert.True(barrier.SignalAndWait(Bound), "barrier timed out");
                    var value = space.AtomicAdd(address, 1); // revokes, or demand-zeroes after the discard
                    Assert.InRange(value, 1, 2 * threads); // adds after last round's discard, plus this round's before this discard
                    Assert.True(barrier.SignalAndWait(Bound), "barrier timed out");
                }
            });
        }

        RunAll("faults vs discard", [.. actions]);
        Teardown(pool, mirror, space);
    }

    /// <summary>A device's retry loop seeing concurrent invalidations (mprotect RO↔RW, clear_refs) converges; every op applied exactly once.</summary>
    [Fact]
    public void RunUnderConcurrentProtectAndClearSoftDirty_ConvergesExactlyOnce()
    {
        const int pages = 32, batches = 40;
        var pool = new PagePool(4 * pages, lockMemory: false);
        var space = new AddressSpace(pool);
        var mirror = Device.Mirror(space);
        var address = space.Map(pages * Page, Protection.ReadWrite);
        var ops = Enumerable.Range(0, pages).Select(i => new AtomicOp(address + (ulong)i * Page, AtomicKind.Add, 1)).ToArray();
        long completed = 0, denied = 0;
        using var stop = new CancellationTokenSource();

        RunAll("run vs protect",
            () =>
            {
                try
                {
                    for (var b = 0; b < batches; b++)
                    {
                        var result = mirror.Run(ops);
                        completed += result.Completed;
                        denied += result.PermissionDenied;
                    }
                }
                finally
                {
                    stop.Cancel();
                }
            },
            () =>
            {
                for (var i = 0; !stop.IsCancellationRequested; i++)
                {
                    space.Protect(address, pages * Page, Protection.Read);
                    space.Protect(address, pages * Page, Protection.ReadWrite);
                    if (i % 3 == 0)
                    {
                        space.ClearSoftDirty();
                    }
                }
            });

        Assert.Equal((long)batches * pages, completed + denied);
        space.Protect(address, pages * Page, Protection.ReadWrite);
        var total = 0L;
        for (var i = 0; i < pages; i++)
        {
            total += space.Read<int>(address + (ulong)i * Page);
        }

        Assert.Equal(completed, total); // exactly once (#4): refused ops changed nothing
        Teardown(pool, mirror, space);
    }

    /// <summary>fork() while a device is mid-grant of 4096 pages: the child never holds a device-exclusive entry.</summary>
    [Fact]
    public void ForkWhileGranting_ChildNeverDeviceExclusive()
    {
        const int pages = 4096;
        var pool = new PagePool(3 * pages, lockMemory: false);
        var space = new AddressSpace(pool);
        var mirror = Device.Mirror(space);
        var address = space.Map(pages * Page, Protection.ReadWrite);
        AddressSpace? child = null;
        using var barrier = new Barrier(2);

        RunAll("grant vs fork",
            () =>
            {
                Assert.True(barrier.SignalAndWait(Bound), "barrier timed out");
                mirror.MakeExclusive(address, pages * Page);
            },
            () =>
            {
                Assert.True(barrier.SignalAndWait(Bound), "barrier timed out");
                Thread.SpinWait(20_000);
                child = space.Fork();
            });

        Assert.NotNull(child);
        for (var i = 0; i < pages; i++)
        {
            Assert.NotEqual(PageState.DeviceExclusive, child.Inspect(address + (ulong)i * Page).State);
        }

        InvariantChecker.Check(pool);
        Teardown(pool, mirror, child, space);
    }

    /// <summary>Exclusive pages under pool pressure: discardable, and their frames reusable at once by a new mapping.</summary>
    [Fact]
    public void ExclusivePagesInAFullPool_DiscardFreesFramesForReuse()
    {
        const int capacity = 64, exclusive = 60;
        var pool = new PagePool(capacity, lockMemory: false);
        var space = new AddressSpace(pool);
        var mirror = Device.Mirror(space);
        var address = space.Map(exclusive * Page, Protection.ReadWrite);
        Assert.Equal(exclusive, mirror.MakeExclusive(address, exclusive * Page));
        var rest = space.Map((capacity - exclusive) * Page, Protection.ReadWrite);
        for (var i = 0; i < capacity - exclusive; i++)
        {
            space.Write(rest + (ulong)i * Page, i + 1);
        }

        Assert.Equal(0, pool.FreePages);
        var extra = space.Map(exclusive * Page, Protection.ReadWrite);
        Assert.ThrowsAny<Exception>(() => space.Write(extra, 1)); // the pool is full

        space.Discard(address, exclusive * Page);
        Assert.Equal(exclusive, pool.FreePages);
        Assert.Equal(0, mirror.CountExclusive(address, exclusive * Page));
        for (var i = 0; i < exclusive; i++)
        {
            space.Write(extra + (ulong)i * Page, i); // faulted in from the discarded frames
        }

        Assert.Equal(0, pool.FreePages);
        Assert.Equal(PageState.NotPresent, space.Inspect(address).State);
        Teardown(pool, mirror, space);
    }
}
