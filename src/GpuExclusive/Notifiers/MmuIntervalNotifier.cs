using System.Runtime.CompilerServices;

namespace GpuExclusive;

/// <summary>
/// A notifier for one interval of an address space with a sequence count, in the style of Linux's
/// <c>mmu_interval_notifier</c>: a driver samples <see cref="ReadBegin"/>, builds its device mapping, and under its
/// own lock checks <see cref="ReadRetry"/> before publishing it; an overlapping invalidation that the notifier does
/// not <see cref="Ignores">ignore</see> bumps the sequence before <see cref="Invalidate"/> runs.
/// </summary>
/// <remarks>Insert with <see cref="AddressSpace.InsertIntervalNotifier"/>. Callbacks run under the same conditions as <see cref="MmuNotifier"/>'s.</remarks>
public abstract class MmuIntervalNotifier
{
    // One word holds the sequence and the count of invalidations in progress, so starting an invalidation is one
    // interlocked add (OneInvalidation: +1 to both) and a reader sees both at once:
    //
    //   63                                   32 31                                    0
    //  +---------------------------------------+---------------------------------------+
    //  |   sequence (bumped by every honoured  |  invalidations in progress (ended    |
    //  |   invalidation's start)               |  ones decrement it)                   |
    //  +---------------------------------------+---------------------------------------+
    //
    // The count cannot carry into the sequence: a fork holds one invalidation per area, and 2^32 areas would not fit
    // in memory. The sequence wraps after 2^32 invalidations, as Linux's does on 32-bit machines: a ReadRetry misses a
    // change only if a multiple of 2^32 invalidations (minutes of nothing else) fell between it and its ReadBegin. Only
    // a ReadBegin that must wait parks on _gate, and an invalidation ending looks for parked waiters (_waiters) before
    // pulsing.
    private const int SequenceShift = 32;
    private const long InProgressMask = (1L << SequenceShift) - 1;
    private const long OneInvalidation = (1L << SequenceShift) + 1;
    private readonly object _gate = new();
    private long _state;
    private int _waiters;

    // The notifier list (of one address space) this notifier is inserted in, or null; changed under that list's lock.
    private object? _insertedIn;

    /// <summary>Creates a notifier; insert it with <see cref="AddressSpace.InsertIntervalNotifier"/>.</summary>
    protected MmuIntervalNotifier()
    {
    }

    /// <summary>For the engine's own notifiers, whose callbacks never call back into the space: they run unmarked.</summary>
    private protected MmuIntervalNotifier(bool engineOwned)
    {
        IsEngineOwned = engineOwned;
    }

    /// <summary>True for the engine's own notifiers (a device mirror's); user callbacks run marked as callbacks.</summary>
    internal bool IsEngineOwned { get; }

    /// <summary>Start of the interval (set when inserted).</summary>
    public ulong Start { get; internal set; }

    /// <summary>End of the interval, exclusive.</summary>
    public ulong End { get; internal set; }

    /// <summary>
    /// Waits until no honoured invalidation is in progress and returns the sequence to pass to <see cref="ReadRetry"/>
    /// (<c>mmu_interval_read_begin</c>). Never call it from this notifier's own callback.
    /// </summary>
    public long ReadBegin()
    {
        while (true)
        {
            // The sequence and the count come from one read: a zero count means any invalidation not yet counted bumps
            // the sequence after this read, which ReadRetry sees.
            var state = Volatile.Read(ref _state);
            if ((state & InProgressMask) == 0)
            {
                return state >>> SequenceShift;
            }

            lock (_gate)
            {
                // Announced before the check (both full fences): an invalidation ending either sees the waiter and
                // pulses under the gate this thread holds until it waits, or ended before the check below.
                Interlocked.Increment(ref _waiters);
                try
                {
                    while ((Volatile.Read(ref _state) & InProgressMask) != 0)
                    {
                        Monitor.Wait(_gate);
                    }
                }
                finally
                {
                    Interlocked.Decrement(ref _waiters);
                }
            }
        }
    }

    /// <summary>True when an invalidation began since <paramref name="sequence"/> was read (<c>mmu_interval_read_retry</c>).</summary>
    public bool ReadRetry(long sequence) => Volatile.Read(ref _state) >>> SequenceShift != sequence;

    /// <summary>
    /// Return true for events this notifier must not react to — a device ignores the
    /// <see cref="NotifierEvent.Exclusive"/> events its own grant causes, or its retry loop would livelock.
    /// Must give the same answer for the same range every time.
    /// </summary>
    protected virtual bool Ignores(in NotifierRange range) => false;

    /// <summary>An overlapping range is about to change: stop device access to it before returning.</summary>
    protected abstract void Invalidate(in NotifierRange range);

    // A device mirror's notifier is on every revocation's path: testing for the sealed DirectIntervalNotifier lets the
    // JIT call its owner's functions directly even without profile data, where a virtual call would cost each
    // revocation two.
    internal bool IgnoresRange(in NotifierRange range) =>
        this is DirectIntervalNotifier direct ? direct.IgnoresDirectly(range) : Ignores(range);

    /// <summary>Honoured invalidations begun and not yet ended (for tests and diagnostics).</summary>
    internal long InvalidationsInProgress => Volatile.Read(ref _state) & InProgressMask;

    /// <summary>True while the notifier is inserted in <paramref name="list"/>.</summary>
    internal bool IsInsertedIn(object list) => ReferenceEquals(Volatile.Read(ref _insertedIn), list);

    /// <summary>Marks the notifier inserted in <paramref name="list"/>; false when it is inserted somewhere already.</summary>
    internal bool TryClaim(object list) => Interlocked.CompareExchange(ref _insertedIn, list, null) is null;

    /// <summary>Marks the notifier removed from <paramref name="list"/> (nothing when it is not inserted there).</summary>
    internal void Release(object list) => Interlocked.CompareExchange(ref _insertedIn, null, list);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void MarkInvalidating() =>
        // In progress and a new sequence at once: see ReadBegin.
        Interlocked.Add(ref _state, OneInvalidation);

    internal void InvokeInvalidate(in NotifierRange range)
    {
        if (this is DirectIntervalNotifier direct)
        {
            direct.InvalidateDirectly(range); // see IgnoresRange
        }
        else
        {
            Invalidate(range);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void EndInvalidation()
    {
        if ((Interlocked.Decrement(ref _state) & InProgressMask) == 0 && Volatile.Read(ref _waiters) > 0)
        {
            WakeReaders();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WakeReaders()
    {
        lock (_gate)
        {
            Monitor.PulseAll(_gate);
        }
    }
}
