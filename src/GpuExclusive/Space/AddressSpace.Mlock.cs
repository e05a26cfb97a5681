using GpuExclusive.Memory;
using GpuExclusive.Paging;

namespace GpuExclusive;

// mlock and munlock: populate and pin a range, unaffected by device grants.
public sealed partial class AddressSpace
{
    /// <summary>
    /// mlocks the range (<c>mlock</c>): every readable page is faulted in now and its frame marked mlocked. Either the
    /// whole range is populated or, when the pool cannot hold it, nothing changes.
    /// </summary>
    /// <exception cref="ArgumentException">Bad range, or part of it is not mapped.</exception>
    /// <exception cref="InsufficientMemoryException">The pool has too few free frames to populate the range.</exception>
    public void Lock(ulong address, ulong length)
    {
        var end = AddressRange.Validate(address, length);
        _mmapLock.EnterWriteLock();
        try
        {
            ThrowIfDisposed();
            ThrowIfNotFullyMappedLocked(address, end);
            using var reservation = FrameReservation.Take(_pool, CountFramesToPopulateLocked(address, end), $"mlock of [0x{address:x}, 0x{end:x})");
            _areas.SplitAt(address);
            _areas.SplitAt(end);
            foreach (var area in _areas.Overlapping(address, end))
            {
                area.Locked = true;
                if (!area.IsReadable)
                {
                    continue;
                }

                for (var page = area.Start; page < area.End; page += PagePool.PageSize)
                {
                    var leaf = _pageTable.GetOrCreateLeaf(page);
                    if (Pte.IsNone(Volatile.Read(ref leaf.Entries[PageTableLeaf.IndexOf(page)])))
                    {
                        DemandFaultLocked(area, leaf, page, isWrite: false, reservation);
                    }
                }
            }

            SetMlockedLocked(address, end, true);
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }
    }

    /// <summary>munlocks the range (<c>munlock</c>).</summary>
    /// <exception cref="ArgumentException">Bad range, or part of it is not mapped.</exception>
    public void Unlock(ulong address, ulong length)
    {
        var end = AddressRange.Validate(address, length);
        _mmapLock.EnterWriteLock();
        try
        {
            ThrowIfDisposed();
            ThrowIfNotFullyMappedLocked(address, end);
            _areas.SplitAt(address);
            _areas.SplitAt(end);
            foreach (var area in _areas.Overlapping(address, end))
            {
                area.Locked = false;
            }

            SetMlockedLocked(address, end, false);
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }
    }

    private void ThrowIfNotFullyMappedLocked(ulong start, ulong end)
    {
        AssertMmapLockHeld();
        var hole = _areas.FirstHole(start, end);
        if (hole is { } at)
        {
            throw new ArgumentException($"range [0x{start:x}, 0x{end:x}) is not fully mapped: nothing is mapped at 0x{at:x}", "address");
        }
    }

    private long CountFramesToPopulateLocked(ulong start, ulong end)
    {
        AssertMmapLockHeld();
        long needed = 0;
        foreach (var area in _areas.Overlapping(start, end))
        {
            if (!area.IsReadable)
            {
                continue;
            }

            var from = Math.Max(start, area.Start);
            var to = Math.Min(end, area.End);
            for (var page = from; page < to; page += PagePool.PageSize)
            {
                var leaf = _pageTable.FindLeaf(page);
                var present = leaf is not null && !Pte.IsNone(Volatile.Read(ref leaf.Entries[PageTableLeaf.IndexOf(page)]));
                if (!present && (area.IsPrivate || !area.SharedObject!.Has(area.ObjectPageOf(page))))
                {
                    needed++;
                }
            }
        }

        return needed;
    }

    private void SetMlockedLocked(ulong start, ulong end, bool mlocked)
    {
        AssertMmapLockHeld();
        _pageTable.ForEachLeaf(start, end, ref mlocked, (PageTableLeaf leaf, int first, int last, ref bool set) =>
        {
            using (leaf.Lock.EnterScope())
            {
                for (var i = first; i <= last; i++)
                {
                    var pte = Volatile.Read(ref leaf.Entries[i]);
                    if (Pte.IsNone(pte))
                    {
                        continue;
                    }

                    if (set)
                    {
                        _pool.SetFlags(Pte.Frame(pte), FrameFlags.Mlocked);
                    }
                    else
                    {
                        _pool.ClearFlags(Pte.Frame(pte), FrameFlags.Mlocked);
                    }
                }
            }
        });
    }
}
