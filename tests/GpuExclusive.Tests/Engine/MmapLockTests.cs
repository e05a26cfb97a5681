using GpuExclusive.Paging;

namespace GpuExclusive.Tests.Engine;

/// <summary>
/// The mmap lock: readers share it, a writer excludes everyone, a waiting writer holds back new readers (so faults
/// cannot starve an unmap) but not a barging reader (a notifier callback that already reads under the lock), and a
/// writer that asks again is refused rather than deadlocked.
/// </summary>
public sealed class MmapLockTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    // Long enough for a thread that is not blocked to get through an uncontended lock many times over.
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(100);

    [Fact]
    public void Readers_ShareTheLock()
    {
        var mmap = new MmapLock();
        mmap.EnterReadLock();
        var other = ReadOnce(mmap);

        Assert.True(other.Join(Patience), "a second reader waited for the first");
        mmap.ExitReadLock();
    }

    [Fact]
    public void Writer_WaitsForTheReaderInside_AndThenKeepsNewReadersOut()
    {
        var mmap = new MmapLock();
        using var writerIn = new ManualResetEventSlim();
        using var writerMayLeave = new ManualResetEventSlim();
        mmap.EnterReadLock();
        var writer = TestThread.Start(() =>
        {
            mmap.EnterWriteLock();
            writerIn.Set();
            writerMayLeave.Wait(Patience);
            mmap.ExitWriteLock();
        });

        WaitUntil(() => mmap.IsWriterPending, "the writer never claimed the lock");
        Assert.False(writerIn.Wait(Settle), "the writer got in while a reader was inside");
        mmap.ExitReadLock();
        Assert.True(writerIn.Wait(Patience), "the writer never got in after the reader left");

        var reader = ReadOnce(mmap);
        Assert.False(reader.Join(Settle), "a reader got in while the writer held the lock");
        writerMayLeave.Set();
        Assert.True(writer.Join(Patience) && reader.Join(Patience), "the reader never got in after the writer left");
    }

    [Fact]
    public void WaitingWriter_HoldsBackANewReader_ButNotABargingOne()
    {
        var mmap = new MmapLock();
        mmap.EnterReadLock();
        var writer = WriteOnce(mmap);
        WaitUntil(() => mmap.IsWriterPending, "the writer never claimed the lock");

        var newReader = ReadOnce(mmap);
        Assert.False(newReader.Join(Settle), "a new reader overtook the waiting writer");

        // This thread reads already (a fault whose notifier callback inspects the space): it must get in, or the waiting
        // writer, which waits for this thread to leave, would never be let in.
        var barging = ReadOnce(mmap, barging: true);
        Assert.True(barging.Join(Patience), "a barging reader waited for a writer that only waits");

        mmap.ExitReadLock();
        Assert.True(writer.Join(Patience) && newReader.Join(Patience), "the writer or the held-back reader never got in");
    }

    [Fact]
    public void BargingReader_WaitsForAWriterThatHolds()
    {
        var mmap = new MmapLock();
        mmap.EnterWriteLock();
        var barging = ReadOnce(mmap, barging: true);

        Assert.False(barging.Join(Settle), "a barging reader got in while a writer held the lock");
        mmap.ExitWriteLock();
        Assert.True(barging.Join(Patience), "the barging reader never got in after the writer left");
    }

    [Fact]
    public void Writer_AskingAgain_IsRefused_AndStillHoldsTheLock()
    {
        var mmap = new MmapLock();
        mmap.EnterWriteLock();
        Assert.True(mmap.IsWriteLockHeld);
        Assert.Throws<LockRecursionException>(mmap.EnterWriteLock);
        Assert.Throws<LockRecursionException>(mmap.EnterReadLock);
        Assert.Throws<LockRecursionException>(mmap.EnterReadLockBarging);
        Assert.True(mmap.IsWriteLockHeld);
        mmap.ExitWriteLock();

        // Nothing the refusals did is left behind: a reader and a writer on another thread get in at once.
        Assert.False(mmap.IsWriteLockHeld);
        Assert.True(TestThread.Start(() =>
        {
            mmap.EnterReadLock();
            mmap.ExitReadLock();
            mmap.EnterWriteLock();
            mmap.ExitWriteLock();
        }).Join(Patience), "the lock was left held after the refused acquisitions");
    }

    [Fact]
    public void ReadersAndWriters_Racing_NeverOverlap_AndEveryoneFinishes()
    {
        var mmap = new MmapLock();
        var readersInside = 0;
        var writersInside = 0;
        var violations = 0;
        long first = 0, second = 0;
        const int WriterRounds = 2_000;
        const int ReaderRounds = 20_000;

        var writers = Enumerable.Range(0, 2).Select(_ => TestThread.Start(() =>
        {
            for (var i = 0; i < WriterRounds; i++)
            {
                mmap.EnterWriteLock();
                if (Interlocked.Increment(ref writersInside) != 1 || Volatile.Read(ref readersInside) != 0)
                {
                    Interlocked.Increment(ref violations);
                }

                // A change in two steps: a reader must never see it half done.
                Volatile.Write(ref first, first + 1);
                Thread.SpinWait(20);
                Volatile.Write(ref second, second + 1);
                Interlocked.Decrement(ref writersInside);
                mmap.ExitWriteLock();
            }
        })).ToArray();
        var readers = Enumerable.Range(0, 3).Select(r => TestThread.Start(() =>
        {
            for (var i = 0; i < ReaderRounds; i++)
            {
                var barging = (i + r) % 7 == 0;
                if (barging)
                {
                    mmap.EnterReadLockBarging();
                }
                else
                {
                    mmap.EnterReadLock();
                }

                Interlocked.Increment(ref readersInside);
                if (Volatile.Read(ref writersInside) != 0 || Volatile.Read(ref first) != Volatile.Read(ref second))
                {
                    Interlocked.Increment(ref violations);
                }

                Interlocked.Decrement(ref readersInside);
                mmap.ExitReadLock();
            }
        })).ToArray();

        Assert.All([.. writers, .. readers], thread => Assert.True(thread.Join(TimeSpan.FromMinutes(2)), "readers and writers did not all finish: a lost wake-up"));
        Assert.Equal(0, violations);
        Assert.Equal(2 * WriterRounds, second);
        Assert.False(mmap.IsWriterPending);
    }

    // A thread that takes the lock once, for reading (barging past a waiting writer if asked) or for writing, and leaves.
    private static TestThread ReadOnce(MmapLock mmap, bool barging = false) => TestThread.Start(() =>
    {
        if (barging)
        {
            mmap.EnterReadLockBarging();
        }
        else
        {
            mmap.EnterReadLock();
        }

        mmap.ExitReadLock();
    });

    private static TestThread WriteOnce(MmapLock mmap) => TestThread.Start(() =>
    {
        mmap.EnterWriteLock();
        mmap.ExitWriteLock();
    });

    private static void WaitUntil(Func<bool> condition, string failure)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            Thread.Sleep(1);
        }
    }
}
