using System.Runtime.CompilerServices;
using GpuExclusive.Diagnostics;
using GpuExclusive.Paging;

namespace GpuExclusive.Notifiers;

/// <summary>
/// The notifiers of one address space. Registration copies the arrays (under <see cref="_lock"/>), so firing reads a
/// stable snapshot without a lock and callbacks run with no notifier-list lock held. Every invalidation fires with
/// the space's mmap lock held: callbacks other than the engine's own run marked as callbacks under it
/// (<see cref="MmapLock.EnterCallback"/>), so one that inspects the space reads alongside its caller and one that
/// would fault or change the space is refused instead of deadlocking.
/// </summary>
internal sealed class NotifierList(MmapLock mmapLock)
{
    private readonly Lock _lock = new();
    private MmuNotifier[] _notifiers = [];
    private MmuIntervalNotifier[] _intervals = [];

    internal void Add(MmuNotifier notifier)
    {
        lock (_lock)
        {
            _notifiers = With(_notifiers, notifier, "this notifier is already registered with the address space");
        }
    }

    internal void Remove(MmuNotifier notifier)
    {
        lock (_lock)
        {
            _notifiers = Without(_notifiers, notifier);
        }
    }

    /// <summary>Inserts <paramref name="notifier"/> for <c>[start, end)</c>, unless it is inserted already (here or in another space).</summary>
    /// <exception cref="InvalidOperationException">The notifier is already inserted; its range is left as it was.</exception>
    internal void Add(MmuIntervalNotifier notifier, ulong start, ulong end)
    {
        lock (_lock)
        {
            // Claim before touching the range: a live notifier's range is what its space's invalidations are matched against.
            if (!notifier.TryClaim(this))
            {
                throw new InvalidOperationException("this interval notifier is already inserted (in this or another address space); dispose its registration first");
            }

            notifier.Start = start;
            notifier.End = end;
            _intervals = [.. _intervals, notifier];
        }
    }

    /// <summary>
    /// Removes <paramref name="notifier"/>; a user's notifier is then waited for until no invalidation that began with
    /// it inserted is still in progress (<c>mmu_interval_notifier_remove</c>): once this returns its callback is not
    /// running and will not run. The engine's own notifiers are not waited for: their callbacks check for themselves
    /// that their mirror is gone, and a grant removes its temporary notifier while it still holds page locks that an
    /// invalidation in progress (a fork's) may be waiting for.
    /// </summary>
    /// <exception cref="InvalidOperationException">A user's notifier removed from a notifier callback (of any space: a
    /// callback may change another space, whose callbacks then run nested): an invalidation up the stack may be one this
    /// would wait for. Nothing is removed.</exception>
    internal void Remove(MmuIntervalNotifier notifier)
    {
        if (!notifier.IsEngineOwned && MmapLock.IsInsideAnyCallback)
        {
            throw new InvalidOperationException("an interval notifier cannot be removed from a notifier callback: removal waits for the invalidations in progress, and the one running this callback may be among them (dispose the registration after the callback returns)");
        }

        bool wasInserted;
        lock (_lock)
        {
            wasInserted = notifier.IsInsertedIn(this);
            _intervals = Without(_intervals, notifier);
            notifier.Release(this);
        }

        if (wasInserted && !notifier.IsEngineOwned)
        {
            // Unlinked (a full fence) before this looks at the count: an invalidation that marked the notifier before is
            // waited for here; one that marks it after sees it unlinked and skips its callback (see Start).
            _ = notifier.ReadBegin();
        }
    }

    // Copy-on-write updates of the snapshot arrays; callers hold _lock.
    private static T[] With<T>(T[] items, T item, string alreadyThere)
        where T : class =>
        Array.IndexOf(items, item) >= 0 ? throw new InvalidOperationException(alreadyThere) : [.. items, item];

    private static T[] Without<T>(T[] items, T item)
        where T : class => [.. items.Where(existing => !ReferenceEquals(existing, item))];

    /// <summary>Fires <c>invalidate_range_start</c> for <paramref name="range"/>; dispose the scope after the PTEs changed.</summary>
    internal Scope Start(in NotifierRange range)
    {
        var notifiers = Volatile.Read(ref _notifiers);
        var intervals = Volatile.Read(ref _intervals);
        if (notifiers.Length == 0 && intervals.Length == 0)
        {
            return default;
        }

        EngineMetrics.NotifierInvalidations.Add(1);
        if (notifiers.Length != 0)
        {
            StartNotifiers(notifiers, range);
        }

        // Bump every honoured interval's sequence before any callback runs: a driver that clears its mapping in one
        // notifier's callback and validates a new one against another notifier's sequence must see the bump first.
        // Whether an interval honours the range is decided here, once, into one bit per interval: the callbacks and the
        // end follow those bits, so an interval removed and re-inserted elsewhere meanwhile still gets exactly one end
        // for its one mark. Up to 64 intervals the bits are one word; past that, an array.
        var words = intervals.Length <= 64 ? null : new ulong[(intervals.Length + 63) >> 6];
        var firstWord = 0UL;
        for (var i = 0; i < intervals.Length; i++)
        {
            var interval = intervals[i];
            if (range.Overlaps(interval.Start, interval.End) && !interval.IgnoresRange(range))
            {
                interval.MarkInvalidating();
                if (words is null)
                {
                    firstWord |= 1UL << i;
                }
                else
                {
                    words[i >> 6] |= 1UL << (i & 63);
                }
            }
        }

        for (var i = 0; i < intervals.Length; i++)
        {
            var interval = intervals[i];
            // Marked (a full fence) before this looks at the insertion: a notifier removed meanwhile either saw the mark
            // and waits for this invalidation's end, or was unlinked first and is not called (its end still follows).
            if (!IsHonoured(firstWord, words, i) || !interval.IsInsertedIn(this))
            {
                continue;
            }

            if (interval.IsEngineOwned)
            {
                interval.InvokeInvalidate(range);
                continue;
            }

            try
            {
                InvokeAsCallback(interval, range);
            }
            catch
            {
                // A user's callback broke its contract and threw. The operation fails with its exception, and what it
                // had done already is not undone; but the invalidation is ended, so that the intervals it marked do not
                // make every later ReadBegin of theirs wait forever.
                ScopeOf(notifiers, intervals, range, words, firstWord).Dispose();
                throw;
            }
        }

        return ScopeOf(notifiers, intervals, range, words, firstWord);
    }

    // The common end needs only the intervals and the word of bits; anything more (notifiers to call, more bits) is
    // carried on the heap, so the scope stays two words and is returned in registers.
    private Scope ScopeOf(MmuNotifier[] notifiers, MmuIntervalNotifier[] intervals, in NotifierRange range, ulong[]? words, ulong firstWord) =>
        notifiers.Length == 0 && words is null
            ? new Scope(intervals, firstWord)
            : new Scope(new SlowEnd(mmapLock, notifiers, intervals, range, words), firstWord);

    // User callbacks run marked (and out of line: the thread-static mark is not on the path of the engine's own
    // notifiers, which every revocation fires).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void StartNotifiers(MmuNotifier[] notifiers, in NotifierRange range)
    {
        foreach (var notifier in notifiers)
        {
            using (mmapLock.EnterCallback())
            {
                notifier.InvalidateStart(range);
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void InvokeAsCallback(MmuIntervalNotifier interval, in NotifierRange range)
    {
        using (mmapLock.EnterCallback())
        {
            interval.InvokeInvalidate(range);
        }
    }

    private static bool IsHonoured(ulong firstWord, ulong[]? words, int index) =>
        words is null ? (firstWord & (1UL << index)) != 0 : (words[index >> 6] & (1UL << (index & 63))) != 0;

    /// <summary>
    /// An invalidation in progress; <see cref="Dispose"/> is <c>invalidate_range_end</c>. Two words: the intervals
    /// snapshot (or a <see cref="SlowEnd"/> with everything the end needs) and the bits of the honoured intervals (the
    /// first 64; a <see cref="SlowEnd"/> holds them all when there are more).
    /// </summary>
    internal readonly struct Scope : IDisposable
    {
        // null: nothing to end; MmuIntervalNotifier[]: end the intervals whose bits are set; SlowEnd: the rest.
        private readonly object? _end;
        private readonly ulong _honoured;

        internal Scope(object end, ulong honoured)
        {
            _end = end;
            _honoured = honoured;
        }

        public void Dispose()
        {
            // SlowEnd is sealed, so this test is one compare; whatever else is not null is the intervals array.
            if (_end is SlowEnd slow)
            {
                slow.Run(_honoured);
            }
            else if (_end is not null)
            {
                EndIntervals(Unsafe.As<MmuIntervalNotifier[]>(_end), _honoured);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void EndIntervals(MmuIntervalNotifier[] intervals, ulong honoured)
        {
            for (var i = 0; i < intervals.Length; i++)
            {
                if ((honoured & (1UL << i)) != 0)
                {
                    intervals[i].EndInvalidation();
                }
            }
        }
    }

    /// <summary>The end of an invalidation that has notifiers to call, or more than 64 intervals (its bits in <paramref name="words"/>).</summary>
    private sealed class SlowEnd(MmapLock mmapLock, MmuNotifier[] notifiers, MmuIntervalNotifier[] intervals, NotifierRange range, ulong[]? words)
    {
        internal void Run(ulong firstWord)
        {
            for (var i = 0; i < intervals.Length; i++)
            {
                if (IsHonoured(firstWord, words, i))
                {
                    intervals[i].EndInvalidation();
                }
            }

            foreach (var notifier in notifiers)
            {
                using (mmapLock.EnterCallback())
                {
                    notifier.InvalidateEnd(range);
                }
            }
        }
    }
}
