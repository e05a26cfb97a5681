using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace GpuExclusive.Paging;

/// <summary>
/// An address space's mmap lock (Linux's <c>mmap_lock</c>, a reader-writer semaphore): faults and grants read,
/// map/unmap/protect/fork write. Writers are preferred: once one waits, new readers wait behind it, so a stream of
/// faults cannot starve an unmap. Both sides sleep rather than spin, since a writer may hold it through a fork of a
/// million pages and a reader through a device stopping.
/// </summary>
/// <remarks>
/// Uncontended, a read acquisition is one interlocked add and its release another. <see cref="ReaderWriterLockSlim"/>
/// costs several times that, because it looks up a per-thread record on every call to detect recursion; this lock
/// keeps no per-reader state, so it cannot tell whether the calling thread holds it for reading. What it does know is
/// which threads are running a notifier callback under it (<see cref="EnterCallback"/>; the holder is up the stack):
/// such a thread reads with <see cref="EnterReadLockBarging"/>, which only waits for a writer that holds the lock,
/// never for one that waits, and so cannot deadlock on its caller's hold; and it is refused the write lock, or a read
/// that would wait for a writer, with <see cref="LockRecursionException"/> rather than left to deadlock.
/// </remarks>
internal sealed class MmapLock
{
    // _state: the number of readers inside (or backing out) in the low bits, and two writer bits.
    private const int WriterWaiting = 1 << 29; // a writer has claimed the lock: new readers wait
    private const int WriterHolds = 1 << 30;   // that writer got it: no reader is inside
    private const int ReaderMask = WriterWaiting - 1;

    private int _state;
    private int _writerThread; // the managed thread id of the writer that holds or waits for the lock, else 0
    private readonly Lock _writers = new(); // one writer at a time
    // Neither event is ever disposed: a thread may still be leaving the lock of a disposed space, and an event only
    // holds an OS handle after a long wait, which its SafeHandle's finalizer releases.
    private readonly ManualResetEventSlim _noWriter = new(initialState: true);
    private readonly ManualResetEventSlim _readersGone = new(initialState: false);

    // The lock whose holder is running a notifier callback on this thread (the innermost, if callbacks nest), else null.
    [ThreadStatic]
    private static MmapLock? t_callbackUnder;

    /// <summary>Whether a writer holds the lock or waits for it (for tests and diagnostics).</summary>
    internal bool IsWriterPending => (Volatile.Read(ref _state) & WriterWaiting) != 0;

    /// <summary>Whether the calling thread holds the lock for writing (or is waiting to).</summary>
    internal bool IsWriteLockHeld => Volatile.Read(ref _writerThread) == Environment.CurrentManagedThreadId;

    /// <summary>
    /// True while some thread holds the lock for reading, or this thread for writing (for DEBUG asserts: readers keep
    /// no per-thread state, so "held by this reader" cannot be asked).
    /// </summary>
    internal bool IsHeld => (Volatile.Read(ref _state) & ReaderMask) != 0 || IsWriteLockHeld;

    /// <summary>Whether the calling thread is running a notifier callback whose caller holds this lock.</summary>
    internal bool IsHeldAroundCallback => t_callbackUnder == this;

    /// <summary>Whether the calling thread is running a notifier callback of any address space.</summary>
    internal static bool IsInsideAnyCallback => t_callbackUnder is not null;

    /// <summary>Marks the calling thread, which holds this lock, as running a notifier callback until the scope ends.</summary>
    internal CallbackScope EnterCallback()
    {
        var outer = t_callbackUnder;
        t_callbackUnder = this;
        return new CallbackScope(outer);
    }

    /// <exception cref="LockRecursionException">The calling thread holds the lock for writing.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void EnterReadLock()
    {
        if ((Interlocked.Increment(ref _state) & WriterWaiting) != 0)
        {
            WaitForWriter(WriterWaiting);
        }
    }

    /// <summary>
    /// Enters for reading even past a writer that is only waiting; for a thread that may already hold the lock for
    /// reading, which a waiting writer would otherwise deadlock with. Throws when the caller holds it for writing.
    /// </summary>
    /// <exception cref="LockRecursionException">The calling thread holds the lock for writing.</exception>
    internal void EnterReadLockBarging()
    {
        ThrowIfWriter();
        if ((Interlocked.Increment(ref _state) & WriterHolds) != 0)
        {
            WaitForWriter(WriterHolds);
        }
    }

    /// <summary>Leaves after <see cref="EnterReadLock"/> or <see cref="EnterReadLockBarging"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ExitReadLock()
    {
        var state = Interlocked.Decrement(ref _state);
        Debug.Assert((state & ReaderMask) != ReaderMask, "mmap lock released for reading more often than taken");
        if (state == WriterWaiting)
        {
            _readersGone.Set(); // the last reader out lets the waiting writer in
        }
    }

    /// <exception cref="LockRecursionException">The calling thread already holds the lock, for writing or around a notifier callback.</exception>
    internal void EnterWriteLock()
    {
        ThrowIfWriter();
        ThrowIfAroundCallback("take it for writing");
        _writers.Enter();
        Volatile.Write(ref _writerThread, Environment.CurrentManagedThreadId);
        _noWriter.Reset();
        _readersGone.Reset();
        var state = Interlocked.Add(ref _state, WriterWaiting);
        try
        {
            while (true)
            {
                // Only when no reader is inside (the count is exactly zero) does the writer take the lock; a barging
                // reader that got in first makes the exchange fail, one that comes later sees WriterHolds and backs out.
                if ((state & ReaderMask) == 0
                    && Interlocked.CompareExchange(ref _state, WriterWaiting | WriterHolds, WriterWaiting) == WriterWaiting)
                {
                    return;
                }

                _readersGone.Wait();
                _readersGone.Reset();
                state = Volatile.Read(ref _state);
            }
        }
        catch
        {
            // Interrupted while waiting for readers: withdraw the claim, so readers and the next writer are not shut out.
            Volatile.Write(ref _writerThread, 0);
            Interlocked.Add(ref _state, -WriterWaiting);
            _noWriter.Set();
            _writers.Exit();
            throw;
        }
    }

    internal void ExitWriteLock()
    {
        Debug.Assert(IsWriteLockHeld && (Volatile.Read(ref _state) & WriterHolds) != 0, "mmap lock released for writing by a thread that does not hold it");
        Volatile.Write(ref _writerThread, 0);
        Interlocked.Add(ref _state, -(WriterWaiting | WriterHolds));
        _noWriter.Set();
        _writers.Exit();
    }

    // A reader that found a writer in its way: back out (letting the writer in if this was the last reader) and wait
    // until no writer is in the way any more, then try again.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForWriter(int inTheWay)
    {
        while (true)
        {
            ExitReadLock();
            // Only here, off the fast path, can the lock afford to look at the thread: its own writer, or a writer
            // waiting for the holder up this thread's stack, would wait forever. Backed out first, so a refused
            // acquisition leaves the count as it was.
            ThrowIfWriter();
            if (inTheWay == WriterWaiting)
            {
                ThrowIfAroundCallback("wait for a writer to take it");
            }

            while ((Volatile.Read(ref _state) & inTheWay) != 0)
            {
                _noWriter.Wait();
            }

            if ((Interlocked.Increment(ref _state) & inTheWay) == 0)
            {
                return;
            }
        }
    }

    private void ThrowIfAroundCallback(string what)
    {
        if (IsHeldAroundCallback)
        {
            throw new LockRecursionException($"a notifier callback cannot {what}: its caller holds the address space's mmap lock (a callback may inspect the space, not fault or change it)");
        }
    }

    /// <summary>The mark of <see cref="EnterCallback"/>; disposing it restores the mark of an outer callback, if any.</summary>
    internal readonly ref struct CallbackScope(MmapLock? outer)
    {
        public void Dispose() => t_callbackUnder = outer;
    }

    private void ThrowIfWriter()
    {
        if (IsWriteLockHeld)
        {
            throw new LockRecursionException("the mmap lock is already held for writing by this thread");
        }
    }
}
