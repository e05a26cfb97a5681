using GpuExclusive.Diagnostics;
using GpuExclusive.Tests.Device;

namespace GpuExclusive.Tests.Model;

/// <summary>
/// Issue 6, item 2: CPU atomics and device batches update shared counters while another thread forks, protects,
/// discards and clears soft-dirty bits on the same mapping; every add that reported success is in the final totals,
/// and nothing else is.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ChurnTotalsTests(CpuAcceleratorFixture fixture) : IClassFixture<CpuAcceleratorFixture>
{
    private const ulong Page = PagePool.PageSize;
    private const int Counters = 2;
    private const int ChurnPages = 6;
    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Fact]
    public void CpuAndDeviceAdds_UnderForkProtectDiscardChurn_TotalExactly()
    {
        using var pool = new PagePool(256, lockMemory: false);
        var space = new AddressSpace(pool);
        var mirror = fixture.Device.Mirror(space);
        var area = space.Map((Counters + ChurnPages) * Page, Protection.ReadWrite);
        var counters = Enumerable.Range(0, Counters).Select(c => area + ((ulong)c * Page)).ToArray();
        var churn = area + (Counters * Page);
        using var stop = new CancellationTokenSource(Duration);
        long cpuAdds = 0, deviceAdds = 0, forks = 0, protects = 0;

        var cpu = Run(() =>
        {
            var i = 0;
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    space.AtomicAdd(counters[i++ % Counters], 1);
                    cpuAdds++;
                }
                catch (MemoryAccessException)
                {
                    // A read-only window: the contract is that nothing was added.
                }
            }
        });
        var device = Run(() =>
        {
            var ops = Enumerable.Range(0, 32).Select(k => new AtomicOp(counters[k % Counters], AtomicKind.Add, 1)).ToArray();
            while (!stop.IsCancellationRequested)
            {
                var result = mirror.Run(ops);
                deviceAdds += result.Completed;
                Assert.Equal(0, result.NotMapped);
                Assert.Equal(ops.Length, result.Completed + result.PermissionDenied);
            }
        });
        var churner = Run(() =>
        {
            var round = 0;
            while (!stop.IsCancellationRequested)
            {
                switch (round++ % 4)
                {
                    case 0:
                        using (var child = space.Fork())
                        {
                            child.Write(churn, round); // the child's copy only
                            forks++;
                        }

                        break;
                    case 1:
                        var counter = counters[round % Counters];
                        space.Protect(counter, Page, Protection.Read);
                        Thread.SpinWait(200);
                        space.Protect(counter, Page, Protection.ReadWrite);
                        protects++;
                        break;
                    case 2:
                        space.Write(churn + ((ulong)(round % ChurnPages) * Page), round);
                        space.Discard(churn, ChurnPages * Page);
                        break;
                    default:
                        space.ClearSoftDirty();
                        break;
                }
            }
        });

        Assert.True(Finish(cpu, device, churner), $"the churn did not finish within {Bound.TotalSeconds} s: deadlock or livelock");
        var total = counters.Sum(c => (long)space.Read<int>(c));
        Assert.Equal(cpuAdds + deviceAdds, total);
        Assert.True(cpuAdds > 0 && deviceAdds > 0 && forks > 0 && protects > 0, $"something never ran: CPU {cpuAdds}, device {deviceAdds}, forks {forks}, protects {protects}");
        InvariantChecker.Check(pool);
        mirror.Dispose();
        space.Dispose();
        Assert.Equal(pool.Capacity, pool.FreePages);
    }

    /// <summary>Waits (bounded) for the worker threads; a failed worker fails the test with its own exception.</summary>
    private static bool Finish(params Task[] tasks) => Task.WaitAll(tasks, Bound);

    private static Task Run(Action work) =>
        Task.Factory.StartNew(work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
}
