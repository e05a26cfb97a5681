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

    internal void Remove(MmuIntervalNotifier notifier)
    {
        lock (_lock)
        {
            _intervals = Without(_intervals, notifier);
            notifier.Release(this);
        }
    }

    // Copy-on-write updates of the snapshot arrays; callers hold _lock.
    private static T[] With<T>(T[] items, T item, string alreadyThere)
        where T : class =>
        Array.IndexOf(items, item) >= 0 ? throw new InvalidOperationException(alreadyThere) : [.. items, item];

    private static T[] Without<T>(T[] items, T item)
        where T : class => [.. items.Where(existing => !ReferenceEquals(existing, item))];

    /// <summary>Fires <c>invalidate_range_start</c> for <paramref name="range"/>; dispose the scope after the PTEs changed.</summary>
    internal Scope Start(NotifierRange range)
    {
        var notifiers = Volatile.Read(ref _notifiers);
        var intervals = Volatile.Read(ref _intervals);
        if (notifiers.Length == 0 && intervals.Length == 0)
        {
            return default;
        }

        EngineMetrics.NotifierInvalidations.Add(1);
        foreach (var notifier in notifiers)
        {
            using (mmapLock.EnterCallback())
            {
                notifier.InvalidateStart(range);
            }
        }

        // Bump every honoured interval's sequence before any callback runs: a driver that clears its mapping in one
        // notifier's callback and validates a new one against another notifier's sequence must see the bump first.
        foreach (var interval in intervals)
        {
            if (range.Overlaps(interval.Start, interval.End) && !interval.IgnoresRange(range))
            {
                interval.MarkInvalidating();
            }
        }

        foreach (var interval in intervals)
        {
            if (range.Overlaps(interval.Start, interval.End) && !interval.IgnoresRange(range))
            {
                if (interval.IsEngineOwned)
                {
                    interval.InvokeInvalidate(range);
                    continue;
                }

                using (mmapLock.EnterCallback())
                {
                    interval.InvokeInvalidate(range);
                }
            }
        }

        return new Scope(mmapLock, notifiers, intervals, range);
    }

    /// <summary>An invalidation in progress; <see cref="Dispose"/> is <c>invalidate_range_end</c>.</summary>
    internal readonly struct Scope(MmapLock? mmapLock, MmuNotifier[]? notifiers, MmuIntervalNotifier[]? intervals, NotifierRange range) : IDisposable
    {
        public void Dispose()
        {
            if (mmapLock is null || notifiers is null || intervals is null)
            {
                return;
            }

            foreach (var interval in intervals)
            {
                if (range.Overlaps(interval.Start, interval.End) && !interval.IgnoresRange(range))
                {
                    interval.EndInvalidation();
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
