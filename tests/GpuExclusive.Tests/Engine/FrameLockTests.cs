using GpuExclusive.Memory;

namespace GpuExclusive.Tests.Engine;

/// <summary>
/// The page lock's FIFO hand-off (docs/architecture.md, "FIFO hand-off"): a parked waiter gets the lock from the
/// unlock, in the order waiters parked, and neither a <c>TryLock</c> nor a newcomer overtakes it.
/// </summary>
public sealed class FrameLockTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    // Frames used here hash to gates no engine test contends on much; any frame number works.
    private const long Frame = 123_457;

    [Fact]
    public void Unlock_WithParkedWaiters_HandsTheLockToTheFirst_AndTryLockNeverBarges()
    {
        var word = 0;
        FrameLock.Lock(ref word, Frame);
        var order = new List<int>();
        var first = TestThread.Start(() => TakeAndRecord(1));
        WaitUntilParked(1);
        var second = TestThread.Start(() => TakeAndRecord(2));
        WaitUntilParked(2);

        // Two parked waiters: the holder unlocks, and the lock goes to the first one without ever being free.
        FrameLock.Unlock(ref word, Frame);
        Assert.False(FrameLock.TryLock(ref word), "a TryLock took a lock that was handed to a parked waiter");
        Assert.True(first.Join(Bound), "the first waiter never got the lock");
        Assert.True(second.Join(Bound), "the second waiter never got the lock");

        Assert.Equal([1, 2], order);
        Assert.False(FrameLock.IsLocked(ref word));
        Assert.False(FrameLock.HasWaiters(ref word));

        void TakeAndRecord(int who)
        {
            FrameLock.Lock(ref word, Frame);
            lock (order)
            {
                order.Add(who);
            }

            // Held a moment, so a barging TryLock would have a window.
            Thread.Sleep(20);
            FrameLock.Unlock(ref word, Frame);
        }

        void WaitUntilParked(int waiters)
        {
            var deadline = DateTime.UtcNow + Bound;
            while (((Volatile.Read(ref word) >> 1) & 0x7FFFF) < waiters)
            {
                Assert.True(DateTime.UtcNow < deadline, $"{waiters} waiter(s) never parked");
                Thread.Sleep(1);
            }
        }
    }

    [Fact]
    public void LockAndUnlock_LeaveTheFrameFlagsAlone()
    {
        const int Flags = 0x7 << 24; // bits above the lock's: frame flags share the word
        var word = Flags;

        FrameLock.Lock(ref word, Frame);
        Assert.True(FrameLock.IsLocked(ref word));
        Assert.Equal(Flags, word & ~1);
        FrameLock.Unlock(ref word, Frame);

        Assert.Equal(Flags, word);
    }

    [Fact]
    public void ManyThreads_TakingTheLockInTurn_NeverHoldItTogether()
    {
        const int Threads = 4;
        const int Rounds = 2000;
        var word = 0;
        var inside = 0;
        var overlaps = 0;
        var workers = Enumerable.Range(0, Threads).Select(_ => TestThread.Start(() =>
        {
            for (var i = 0; i < Rounds; i++)
            {
                FrameLock.Lock(ref word, Frame);
                if (Interlocked.Increment(ref inside) != 1)
                {
                    Interlocked.Increment(ref overlaps);
                }

                Interlocked.Decrement(ref inside);
                FrameLock.Unlock(ref word, Frame);
            }
        })).ToArray();

        Assert.All(workers, worker => Assert.True(worker.Join(Bound), "a worker hung: a lost hand-off"));
        Assert.Equal(0, overlaps);
        Assert.Equal(0, word);
    }
}
