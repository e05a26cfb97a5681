using System.Diagnostics;

namespace GpuExclusive.Tests.Engine;

/// <summary>Stress tests run one at a time: they want the machine's cores to themselves.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class StressCollection
{
    public const string Name = "Stress";
}

/// <summary>
/// Bounded concurrency: CPU accesses racing Fork, Protect, Discard, Map/Unmap. Every test stops after a fixed
/// number of operations or <see cref="Budget"/>, whichever comes first, and checks exact totals and invariants.
/// </summary>
[Collection(StressCollection.Name)]
public sealed class ConcurrencyStressTests : EngineTest
{
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Hang = TimeSpan.FromSeconds(30);

    public ConcurrencyStressTests() : base(capacityPages: 1024) { }

    /// <summary>Starts <paramref name="bodies"/> on threads released together, and fails on the first error or a hang.</summary>
    private static void RunTogether(params Action[] bodies)
    {
        using var start = new Barrier(bodies.Length);
        var errors = new Exception?[bodies.Length];
        var threads = bodies.Select((body, i) => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                body();
            }
            catch (Exception e)
            {
                errors[i] = e;
            }
        }) { IsBackground = true, Name = $"stress {i}" }).ToArray();
        foreach (var t in threads)
            t.Start();
        foreach (var t in threads)
            Assert.True(t.Join(Hang), $"{t.Name} still running after {Hang.TotalSeconds} s: deadlock or livelock");
        var failures = errors.Where(e => e is not null).ToArray();
        if (failures.Length > 0)
            throw new AggregateException(failures!);
    }

    [Fact]
    public void AtomicAdd_WhileForkingAndProtecting_TotalsAreExact()
    {
        const int Adders = 3;
        const int OpsPerAdder = 200_000;
        const int Counters = 8;
        var space = NewSpace();
        var a = space.Map(4 * Page, Protection.ReadWrite);
        // Counters spread over all four pages, two per page, so COW breaks and protects hit each of them.
        ulong CounterAddress(int i) => a + (ulong)(i % 4) * Page + (ulong)(i / 4) * 64;
        var counted = new long[Adders, Counters];
        var faults = new long[Adders];
        var snapshots = new List<int[]>();
        using var addersDone = new CountdownEvent(Adders);
        var clock = Stopwatch.StartNew();
        long forks = 0, protects = 0;

        var bodies = new List<Action>();
        for (var t = 0; t < Adders; t++)
        {
            var id = t;
            bodies.Add(() =>
            {
                try
                {
                    var rng = new Random(id);
                    for (var op = 0; op < OpsPerAdder && clock.Elapsed < Budget; op++)
                    {
                        var c = rng.Next(Counters);
                        var delta = rng.Next(1, 4);
                        try
                        {
                            space.AtomicAdd(CounterAddress(c), delta);
                            counted[id, c] += delta;
                        }
                        catch (MemoryAccessException e)
                        {
                            Assert.True(e.IsWrite);
                            faults[id]++;
                        }
                    }
                }
                finally
                {
                    addersDone.Signal();
                }
            });
        }
        bodies.Add(() =>
        {
            while (!addersDone.IsSet)
            {
                using (var child = space.Fork())
                {
                    snapshots.Add([.. Enumerable.Range(0, Counters).Select(i => child.Read<int>(CounterAddress(i)))]);
                }
                forks++;
                space.Protect(a, 4 * Page, Protection.Read);
                space.Protect(a, 4 * Page, Protection.ReadWrite);
                protects++;
            }
        });

        RunTogether([.. bodies]);

        for (var c = 0; c < Counters; c++)
        {
            long expected = 0;
            for (var t = 0; t < Adders; t++)
                expected += counted[t, c];
            Assert.Equal(expected, space.Read<int>(CounterAddress(c)));
        }
        // Each child is a snapshot of counters that only grow: successive snapshots never go backwards.
        for (var s = 1; s < snapshots.Count; s++)
            for (var c = 0; c < Counters; c++)
                Assert.True(snapshots[s][c] >= snapshots[s - 1][c], $"snapshot {s} counter {c} went backwards");
        Assert.True(forks > 0 && protects > 0, "the fork/protect thread never ran");
        AssertInvariants();
    }

    [Fact]
    public void AtomicAdd_OnASharedMapping_FromParentAndChildThreads_TotalsAreExact()
    {
        const int OpsPerThread = 100_000;
        var parent = NewSpace();
        var a = parent.Map(2 * Page, Protection.ReadWrite, Sharing.Shared);
        var child = ForkOf(parent);
        var clock = Stopwatch.StartNew();
        var done = new long[4];

        Action Adder(AddressSpace space, int id) => () =>
        {
            for (var op = 0; op < OpsPerThread && clock.Elapsed < Budget; op++)
            {
                space.AtomicAdd(a + (ulong)(op & 1) * Page + 4, 1);
                done[id]++;
            }
        };

        RunTogether(Adder(parent, 0), Adder(parent, 1), Adder(child, 2), Adder(child, 3));

        var total = done.Sum();
        Assert.Equal(total, (long)parent.Read<int>(a + 4) + parent.Read<int>(a + Page + 4));
        Assert.Equal(parent.Read<int>(a + 4), child.Read<int>(a + 4));
        AssertInvariants();
    }

    [Fact]
    public void AtomicAdd_WhileDiscardingAnotherPageOfTheMapping_TotalsAreExact()
    {
        const int OpsPerThread = 200_000;
        var space = NewSpace();
        var a = space.Map(4 * Page, Protection.ReadWrite);
        var clock = Stopwatch.StartNew();
        var done = new long[2];
        using var addersDone = new CountdownEvent(2);

        Action Adder(int id) => () =>
        {
            try
            {
                for (var op = 0; op < OpsPerThread && clock.Elapsed < Budget; op++)
                {
                    space.AtomicAdd(a + 8, 1);
                    done[id]++;
                }
            }
            finally
            {
                addersDone.Signal();
            }
        };

        RunTogether(Adder(0), Adder(1), () =>
        {
            var rng = new Random(7);
            while (!addersDone.IsSet)
            {
                var page = a + (ulong)rng.Next(1, 4) * Page;
                space.Write(page, 1);
                space.Discard(page, Page);
                Assert.Equal(0, space.Read<int>(page));
            }
        });

        Assert.Equal(done.Sum(), space.Read<int>(a + 8));
        AssertInvariants();
    }

    [Fact]
    public void MixedOperations_OnDisjointMappings_KeepEveryThreadsData()
    {
        const int Threads = 4;
        const int Rounds = 400;
        var space = NewSpace();
        var clock = Stopwatch.StartNew();

        Action Worker(int id) => () =>
        {
            var rng = new Random(100 + id);
            var mine = new Dictionary<ulong, int>(); // page address → value written at its first int
            var a = space.Map(8 * Page, Protection.ReadWrite);
            for (var round = 0; round < Rounds && clock.Elapsed < Budget; round++)
            {
                var page = a + (ulong)rng.Next(8) * Page;
                switch (rng.Next(7))
                {
                    case 0 or 1:
                        var value = rng.Next();
                        space.Write(page, value);
                        mine[page] = value;
                        break;
                    case 2:
                        space.Discard(page, Page);
                        mine.Remove(page);
                        break;
                    case 3:
                        space.Protect(page, Page, Protection.Read);
                        Assert.Throws<MemoryAccessException>(() => space.Write(page, 0));
                        space.Protect(page, Page, Protection.ReadWrite);
                        break;
                    case 4:
                        using (var child = space.Fork())
                            Assert.Equal(mine.GetValueOrDefault(page), child.Read<int>(page));
                        break;
                    case 5:
                        var scratch = space.Map(2 * Page, Protection.ReadWrite);
                        space.Write(scratch + Page, id);
                        Assert.Equal(id, space.Read<int>(scratch + Page));
                        space.Unmap(scratch, 2 * Page);
                        break;
                    default:
                        space.ClearSoftDirty();
                        break;
                }
                foreach (var (address, expected) in mine)
                    Assert.Equal(expected, space.Read<int>(address));
            }
            space.Unmap(a, 8 * Page);
        };

        RunTogether([.. Enumerable.Range(0, Threads).Select(Worker)]);

        AssertInvariants();
        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    [Fact]
    public void ForkAndDispose_FromManyThreads_OfASharedParent_ReturnsEveryFrame()
    {
        const int Threads = 3;
        const int ForksPerThread = 300;
        var parent = NewSpace();
        var a = parent.Map(16 * Page, Protection.ReadWrite);
        Fill(parent, a, 16, 0x5C);
        var clock = Stopwatch.StartNew();

        Action Forker(int id) => () =>
        {
            for (var i = 0; i < ForksPerThread && clock.Elapsed < Budget; i++)
            {
                using var child = parent.Fork();
                var page = a + (ulong)((i + id) % 16) * Page;
                child.Write(page, id);
                Assert.Equal(id, child.Read<int>(page));
                Assert.Equal(0x5C5C5C5C, parent.Read<int>(page));
            }
        };

        RunTogether([.. Enumerable.Range(0, Threads).Select(Forker)]);

        AssertAllBytes(0x5C, ReadPages(parent, a, 16));
        AssertInvariants();
        DisposeSpace(parent);
        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    /// <summary>
    /// Software TLB shootdown (docs/architecture.md, "the host memory model"): once Fork has returned, no store that translated through the parent's
    /// old writable PTE may still land in the frame the child now shares, so the child's snapshot never changes.
    /// </summary>
    [Fact]
    public void ForkedChildSnapshot_NeverChanges_AfterForkReturns()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        var clock = Stopwatch.StartNew();
        using var stop = new ManualResetEventSlim();
        long checks = 0;

        Action Writer(ulong offset) => () =>
        {
            var value = 0L;
            while (!stop.IsSet)
                space.Write(a + offset, ++value);
        };

        RunTogether(Writer(8), Writer(Page + 16), () =>
        {
            try
            {
                while (clock.Elapsed < Budget)
                {
                    using var child = space.Fork();
                    var first = (child.Read<long>(a + 8), child.Read<long>(a + Page + 16));
                    Thread.SpinWait(2000);
                    var second = (child.Read<long>(a + 8), child.Read<long>(a + Page + 16));
                    Assert.Equal(first, second);
                    checks++;
                }
            }
            finally
            {
                stop.Set();
            }
        });

        Assert.True(checks > 0);
        AssertInvariants();
    }

    /// <summary>Software TLB shootdown: once Protect(read-only) has returned, no in-flight store may still change the page.</summary>
    [Fact]
    public void Value_NeverChanges_AfterProtectReadOnlyReturns()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        var clock = Stopwatch.StartNew();
        using var stop = new ManualResetEventSlim();
        long checks = 0;

        Action Writer(ulong offset) => () =>
        {
            while (!stop.IsSet)
            {
                try { space.AtomicAdd(a + offset, 1); }
                catch (MemoryAccessException) { }
            }
        };

        RunTogether(Writer(0), Writer(64), () =>
        {
            try
            {
                while (clock.Elapsed < Budget)
                {
                    space.Protect(a, Page, Protection.Read);
                    var first = (space.Read<int>(a), space.Read<int>(a + 64));
                    Thread.SpinWait(2000);
                    var second = (space.Read<int>(a), space.Read<int>(a + 64));
                    Assert.Equal(first, second);
                    space.Protect(a, Page, Protection.ReadWrite);
                    checks++;
                }
            }
            finally
            {
                stop.Set();
            }
        });

        Assert.True(checks > 0);
        AssertInvariants();
    }

    /// <summary>
    /// Parent and child race to break COW on the same pages: whichever copies and whichever reuses, each side ends
    /// with exactly the value at fork plus its own adds (no add lost, none leaking into the other side).
    /// </summary>
    [Fact]
    public void AtomicAdd_InParentAndChildRightAfterFork_EachSideKeepsExactlyItsOwnAdds()
    {
        const int Rounds = 40;
        const int OpsPerThread = 2_000;
        var parent = NewSpace();
        var a = parent.Map(2 * Page, Protection.ReadWrite);
        var clock = Stopwatch.StartNew();
        var expected = new long[2]; // parent's counters at a and a + Page

        for (var round = 0; round < Rounds && clock.Elapsed < Budget; round++)
        {
            var child = ForkOf(parent);
            var before = new long[] { parent.Read<int>(a), parent.Read<int>(a + Page) };

            Action Adder(AddressSpace space, int page) => () =>
            {
                for (var op = 0; op < OpsPerThread; op++)
                    space.AtomicAdd(a + (ulong)((op + page) & 1) * Page, 1);
            };

            RunTogether(Adder(parent, 0), Adder(parent, 1), Adder(child, 0), Adder(child, 1));

            // Two threads per side, each adding OpsPerThread/2 to each counter.
            for (var c = 0; c < 2; c++)
            {
                Assert.Equal(before[c] + OpsPerThread, parent.Read<int>(a + (ulong)c * Page));
                Assert.Equal(before[c] + OpsPerThread, child.Read<int>(a + (ulong)c * Page));
                expected[c] = before[c] + OpsPerThread;
            }
            Assert.NotEqual(parent.Inspect(a).Frame, child.Inspect(a).Frame);
            AssertInvariants();
            DisposeSpace(child);
        }

        Assert.Equal(expected[0], parent.Read<int>(a));
    }
}
