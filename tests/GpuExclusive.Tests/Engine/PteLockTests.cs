using GpuExclusive.Paging;

namespace GpuExclusive.Tests.Engine;

/// <summary>The PTE spinlock: one holder at a time, and a <c>using</c> scope releases it however the block ends.</summary>
public sealed class PteLockTests
{
    [Fact]
    public void Enter_LetsOneThreadInAtATime()
    {
        var pte = new PteLock();
        var inside = 0;
        var overlaps = 0;
        long counter = 0; // incremented without atomics: only the lock keeps increments from being lost
        const int Threads = 4;
        const int Rounds = 50_000;

        var workers = Enumerable.Range(0, Threads).Select(_ => TestThread.Start(() =>
        {
            for (var i = 0; i < Rounds; i++)
            {
                using (pte.EnterScope())
                {
                    if (Interlocked.Increment(ref inside) != 1)
                    {
                        Interlocked.Increment(ref overlaps);
                    }

                    counter++;
                    Interlocked.Decrement(ref inside);
                }
            }
        })).ToArray();

        Assert.All(workers, worker => Assert.True(worker.Join(TimeSpan.FromMinutes(2)), "the workers did not finish"));
        Assert.Equal(0, overlaps);
        Assert.Equal((long)Threads * Rounds, counter);
    }

    [Fact]
    public void Scope_LeftByAnException_ReleasesTheLock()
    {
        var pte = new PteLock();
        Assert.Throws<InvalidOperationException>(() => ThrowInside(pte));

        var other = TestThread.Start(() =>
        {
            pte.Enter();
            pte.Exit();
        });
        Assert.True(other.Join(TimeSpan.FromSeconds(10)), "the lock stayed held after the exception");

        static void ThrowInside(PteLock pte)
        {
            using (pte.EnterScope())
            {
                throw new InvalidOperationException("inside the lock");
            }
        }
    }
}
