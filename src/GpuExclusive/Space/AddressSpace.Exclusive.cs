using System.Runtime.CompilerServices;
using GpuExclusive.Diagnostics;
using GpuExclusive.Memory;
using GpuExclusive.Paging;

namespace GpuExclusive;

/// <summary>A page converted to a device-exclusive entry, returned with its frame locked and referenced.</summary>
internal readonly record struct GrantedPage(ulong Address, long Frame);

// Device-exclusive entries: conversion (make_device_exclusive, 6.15+) and restore (remove_device_exclusive_entry).
public sealed partial class AddressSpace
{
    /// <summary>Pages converted under one notifier call and one TLB shootdown.</summary>
    private const int GrantBatchPages = 512;

    /// <summary>
    /// Converts the pages of <c>[start, end)</c>, in order, to device-exclusive entries for <paramref name="owner"/>
    /// (docs/architecture.md, "the grant path") and appends them to <paramref name="granted"/> with their frames <b>locked and referenced</b>: the
    /// caller maps them on the device, then calls <see cref="ReleaseGranted"/> for each.
    /// </summary>
    /// <remarks>
    /// A page lock is waited for (not try-locked: the 6.15 fix for spurious EBUSY) only while no granted frame is held,
    /// here or by the caller; waiting while holding one could deadlock with another device doing the same. Otherwise
    /// the call stops at the busy page and returns it, and the caller, after releasing what it holds, calls again.
    /// </remarks>
    /// <returns>The first page not granted: <paramref name="end"/> when every page was.</returns>
    /// <exception cref="MemoryAccessException">Part of the range is unmapped or not writable; nothing changed.</exception>
    /// <exception cref="NotSupportedException">Part of the range is a shared mapping; nothing changed.</exception>
    /// <exception cref="InsufficientMemoryException">Faulting the range in needs more frames than are free; nothing changed.</exception>
    internal ulong GrantExclusive(ulong start, ulong end, object owner, List<GrantedPage> granted)
    {
        _mmapLock.EnterReadLock();
        try
        {
            ThrowIfDisposed();
            ThrowIfNotGrantableLocked(start, end);
            using var reservation = FrameReservation.Take(_pool, CountFramesToFaultForWriteLocked(start, end), $"making [0x{start:x}, 0x{end:x}) device-exclusive");
            return GrantRangeLocked(start, end, owner, granted, reservation);
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    /// <summary>
    /// Grants several page runs (a device's faults of one launch) under <b>one</b> acquisition of the mmap lock: a
    /// caller holding granted frames must never ask for the mmap lock again, or a queued writer (fork, protect) that
    /// waits behind a revoker waiting for one of those frames would deadlock with it. Runs that can no longer be
    /// granted (unmapped or made read-only meanwhile) are skipped; the ops on them fault again and are classified anew.
    /// Stops at the first busy page, like <see cref="GrantExclusive"/>.
    /// </summary>
    /// <exception cref="InsufficientMemoryException">Faulting the runs in needs more frames than are free; nothing changed.</exception>
    internal void GrantExclusiveRuns(IReadOnlyList<(ulong Start, ulong End)> runs, object owner, List<GrantedPage> granted)
    {
        _mmapLock.EnterReadLock();
        try
        {
            ThrowIfDisposed();
            var grantable = new List<(ulong Start, ulong End)>(runs.Count);
            long frames = 0;
            foreach (var run in runs)
            {
                try
                {
                    ThrowIfNotGrantableLocked(run.Start, run.End);
                }
                catch (Exception ex) when (ex is MemoryAccessException or NotSupportedException)
                {
                    continue;
                }

                grantable.Add(run);
                frames += CountFramesToFaultForWriteLocked(run.Start, run.End);
            }

            using var reservation = FrameReservation.Take(_pool, frames, "servicing device faults");
            foreach (var (start, end) in grantable)
            {
                if (GrantRangeLocked(start, end, owner, granted, reservation) != end)
                {
                    return;
                }
            }
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    private ulong GrantRangeLocked(ulong start, ulong end, object owner, List<GrantedPage> granted, FrameReservation reservation)
    {
        AssertMmapLockHeld();
        var batch = new List<GrantedPage>(Math.Min(GrantBatchPages, (int)((end - start) >> PagePool.PageShift)));
        for (var page = start; page < end; page += PagePool.PageSize)
        {
            var holdsLocks = batch.Count > 0 || granted.Count > 0;
            var frame = FaultInWritableAndGetLocked(_areas.Find(page)!, page, reservation, mayBlock: !holdsLocks, owner);
            if (frame < 0)
            {
                ConvertBatchLocked(batch, owner, granted);
                return page; // another device holds the page locked and we hold locks: stop here
            }

            ref var lockWord = ref _pool.Meta(frame).State;
            if (!FrameLock.TryLock(ref lockWord))
            {
                if (holdsLocks)
                {
                    _pool.Put(frame);
                    ConvertBatchLocked(batch, owner, granted);
                    return page;
                }

                FrameLock.Lock(ref lockWord, frame);
            }

            batch.Add(new GrantedPage(page, frame));
            if (batch.Count == GrantBatchPages)
            {
                ConvertBatchLocked(batch, owner, granted);
            }
        }

        ConvertBatchLocked(batch, owner, granted);
        return end;
    }

    /// <summary>Unlocks and drops the reference of a page returned by <see cref="GrantExclusive"/>.</summary>
    internal void ReleaseGranted(GrantedPage page)
    {
        FrameLock.Unlock(ref _pool.Meta(page.Frame).State, page.Frame);
        _pool.Put(page.Frame);
    }

    /// <summary>
    /// Under one <see cref="NotifierEvent.Exclusive"/> invalidation and one shootdown, re-checks that each locked page
    /// is still mapped writable by the same frame and converts it (docs/architecture.md, "the grant path", steps 2–3). Pages that changed meanwhile
    /// are unlocked and granted again from the start (retry, not failure).
    /// </summary>
    private void ConvertBatchLocked(List<GrantedPage> batch, object owner, List<GrantedPage> granted)
    {
        AssertMmapLockHeld();
        while (batch.Count > 0)
        {
            var retry = new List<GrantedPage>();
            var rangeStart = batch[0].Address;
            var rangeEnd = batch[^1].Address + PagePool.PageSize;
            using (_notifiers.Start(new NotifierRange(rangeStart, rangeEnd, NotifierEvent.Exclusive, owner)))
            {
                // Pages of a batch are in address order: take each leaf's lock (and open its reader-visible change) once.
                PageTableLeaf? current = null;
                try
                {
                    foreach (var page in batch)
                    {
                        var leaf = _pageTable.FindLeaf(page.Address)!;
                        if (!ReferenceEquals(leaf, current))
                        {
                            if (current is not null)
                            {
                                current.EndChange();
                                current.Lock.Exit();
                            }

                            leaf.Lock.Enter();
                            leaf.BeginChange();
                            current = leaf;
                        }

                        ref var entry = ref leaf.Entries[PageTableLeaf.IndexOf(page.Address)];
                        var pte = Volatile.Read(ref entry);
                        if (!Pte.IsWritable(pte) || Pte.Frame(pte) != page.Frame)
                        {
                            retry.Add(page);
                            continue;
                        }

                        // Exchange so that no CPU access can set Dirty after we have read it (the "nuke" of Linux);
                        // an access may have set SoftDirty or Dirty since our read, so both come from the old value.
                        var old = Interlocked.Exchange(ref entry, Pte.MakeDeviceExclusive(page.Frame, Pte.Has(pte, Pte.SoftDirty), Pte.Has(pte, Pte.UffdWp)));
                        if (Pte.Has(old, Pte.Dirty))
                        {
                            _pool.SetFlags(page.Frame, FrameFlags.Dirty);
                        }

                        if (Pte.Has(old, Pte.SoftDirty) && !Pte.Has(pte, Pte.SoftDirty))
                        {
                            Volatile.Write(ref entry, Pte.MakeDeviceExclusive(page.Frame, softDirty: true, Pte.Has(old, Pte.UffdWp)));
                        }

                        granted.Add(page);
                    }
                }
                finally
                {
                    if (current is not null)
                    {
                        current.EndChange();
                        current.Lock.Exit();
                    }
                }

                // A CPU store that translated through a converted PTE must land before the device may touch the frame.
                TlbShootdown.Flush();
            }

            EngineMetrics.Grants.Add(batch.Count - retry.Count);
            batch.Clear();
            foreach (var page in retry)
            {
                // The PTE changed under us (another fault replaced or restored it): fault it in again and retry. We hold
                // locks, so only a free lock may be taken; a busy page is simply not granted this time.
                ReleaseGranted(page);
                var frame = FaultInWritableAndGetLocked(_areas.Find(page.Address)!, page.Address, reservation: null, mayBlock: false, owner);
                if (frame >= 0 && FrameLock.TryLock(ref _pool.Meta(frame).State))
                {
                    batch.Add(new GrantedPage(page.Address, frame));
                }
                else if (frame >= 0)
                {
                    _pool.Put(frame);
                }
            }
        }
    }

    /// <summary>
    /// Faults <paramref name="page"/> in for write and returns its frame with a reference. A device-exclusive entry is
    /// restored first (revoking the other owner; the <see cref="NotifierEvent.Clear"/> carries <paramref name="owner"/>,
    /// so the granting device's own retry check can tell it from a revocation that races with the grant); when
    /// <paramref name="mayBlock"/> is false and its page lock is busy, returns -1 instead of waiting.
    /// </summary>
    private long FaultInWritableAndGetLocked(Vma area, ulong page, FrameReservation? reservation, bool mayBlock, object owner)
    {
        AssertMmapLockHeld();
        var leaf = _pageTable.GetOrCreateLeaf(page);
        ref var entry = ref leaf.Entries[PageTableLeaf.IndexOf(page)];
        while (true)
        {
            var pte = Volatile.Read(ref entry);
            if (Pte.IsDeviceExclusive(pte))
            {
                if (!RestoreDeviceExclusiveLocked(area, leaf, page, pte, mayBlock, owner))
                {
                    return -1;
                }

                continue;
            }

            if (!Pte.IsWritable(pte))
            {
                HandleFaultLocked(area, page, isWrite: true, reservation);
                continue;
            }

            var frame = Pte.Frame(pte);
            if (_pool.TryGet(frame))
            {
                return frame;
            }
        }
    }

    private void ThrowIfNotGrantableLocked(ulong start, ulong end)
    {
        AssertMmapLockHeld();
        if (_areas.FirstHole(start, end) is { } hole)
        {
            throw new MemoryAccessException(hole, isWrite: true, "no mapping covers the address");
        }

        foreach (var area in _areas.Overlapping(start, end))
        {
            var first = Math.Max(start, area.Start);
            if (!area.IsWritable)
            {
                throw new MemoryAccessException(first, isWrite: true, $"the mapping {area} is not writable");
            }

            if (!area.IsPrivate)
            {
                throw new NotSupportedException($"0x{first:x} is in the shared mapping {area}: only private anonymous pages can be device-exclusive");
            }
        }
    }

    /// <summary>An upper bound on the frames faulting <c>[start, end)</c> in for write can allocate: empty pages and COW-shared ones.</summary>
    private long CountFramesToFaultForWriteLocked(ulong start, ulong end)
    {
        AssertMmapLockHeld();
        long count = 0;
        for (var page = start; page < end; page += PagePool.PageSize)
        {
            var leaf = _pageTable.FindLeaf(page);
            var pte = leaf is null ? Pte.None : Volatile.Read(ref leaf.Entries[PageTableLeaf.IndexOf(page)]);
            if (Pte.IsNone(pte) || (Pte.IsPresent(pte) && !Pte.IsWritable(pte) && (_pool.Flags(Pte.Frame(pte)) & FrameFlags.AnonExclusive) == 0))
            {
                count++;
            }
        }

        return count;
    }

    /// <summary>
    /// A CPU access to a device-exclusive entry (<c>remove_device_exclusive_entry</c>): with a reference and the page
    /// lock held, fire <see cref="NotifierEvent.Clear"/> — the owning device stops and unmaps before it returns — then
    /// restore a present PTE if the entry is still the one we saw. The access is retried either way.
    /// </summary>
    /// <returns>False only when <paramref name="mayBlock"/> is false and the page lock is busy.</returns>
    private bool RestoreDeviceExclusiveLocked(Vma area, PageTableLeaf leaf, ulong page, long pte, bool mayBlock = true, object? owner = null) =>
        RestoreDeviceExclusiveLocked(area, leaf, page, pte, mayBlock, owner, keepLocked: false, out _);

    /// <summary>
    /// <see cref="RestoreDeviceExclusiveLocked(Vma, PageTableLeaf, ulong, long, bool, object?)"/>; with
    /// <paramref name="keepLocked"/>, a restored page's frame stays locked and referenced (<paramref name="kept"/>, else
    /// -1) so that the CPU access that faulted completes before anyone else — a device re-granting the page — can take
    /// the lock: the FIFO hand-off of docs/architecture.md. The caller retries its access, then calls
    /// <see cref="ReleaseRestored"/>.
    /// </summary>
    private bool RestoreDeviceExclusiveLocked(Vma area, PageTableLeaf leaf, ulong page, long pte, bool mayBlock, object? owner, bool keepLocked, out long kept)
    {
        AssertMmapLockHeld();
        kept = -1;
        if (_hasLogger)
        {
            SpaceLog.Fault(_logger, Id, "device-exclusive", page, false);
        }

        var frame = Pte.Frame(pte);
        if (!_pool.TryGet(frame))
        {
            return true; // the entry was zapped and the frame freed meanwhile
        }

        ref var meta = ref _pool.Meta(frame);
        try
        {
            if (!mayBlock && !FrameLock.TryLock(ref meta.State))
            {
                return false;
            }

            if (mayBlock)
            {
                FrameLock.Lock(ref meta.State, frame);
            }

            try
            {
                using (_notifiers.Start(new NotifierRange(page, page + PagePool.PageSize, NotifierEvent.Clear, owner)))
                {
                    ref var entry = ref leaf.Entries[PageTableLeaf.IndexOf(page)];
                    var restored = false;
                    using (leaf.Lock.EnterScope())
                    {
                        if (Volatile.Read(ref entry) == pte)
                        {
                            Volatile.Write(ref entry, RestoredPte(area, frame, pte));
                            restored = true;
                        }
                    }

                    // Counted outside the PTE spinlock: a metrics listener's callback runs inside Add.
                    if (restored)
                    {
                        EngineMetrics.Revocations.Add(1);
                        if (keepLocked)
                        {
                            kept = frame;
                        }
                    }
                }
            }
            finally
            {
                if (kept < 0)
                {
                    FrameLock.Unlock(ref meta.State, frame);
                }
            }
        }
        finally
        {
            if (kept < 0)
            {
                _pool.Put(frame);
            }
        }

        return true;
    }

    /// <summary>Unlocks and drops the reference of a frame a restore kept for the faulting access (-1: nothing kept).</summary>
    private void ReleaseRestored(long frame)
    {
        if (frame >= 0)
        {
            FrameLock.Unlock(ref _pool.Meta(frame).State, frame);
            _pool.Put(frame);
        }
    }

    /// <summary>
    /// Restores the device-exclusive entry at <paramref name="page"/>, if there is one, as a CPU touch would
    /// (<see cref="RestoreDeviceExclusiveLocked(Vma, PageTableLeaf, ulong, long, bool, object?)"/>) but without an access: how a failed device's pages go back to the
    /// CPU. Does nothing on a disposed space or where nothing is mapped.
    /// </summary>
    internal void RestoreDeviceExclusive(ulong page)
    {
        _mmapLock.EnterReadLock();
        try
        {
            if (IsDisposed || _areas.Find(page) is not { } area || _pageTable.FindLeaf(page) is not { } leaf)
            {
                return;
            }

            var pte = Volatile.Read(ref leaf.Entries[PageTableLeaf.IndexOf(page)]);
            if (Pte.IsDeviceExclusive(pte))
            {
                RestoreDeviceExclusiveLocked(area, leaf, page, pte);
            }
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    /// <summary>
    /// The present PTE that replaces a device-exclusive entry (<c>restore_exclusive_pte</c>, 6.15+): old, soft-dirty
    /// and uffd-wp carried back, writable only when the area is writable, no soft-dirty or uffd-wp tracking needs a
    /// write fault, and the frame is exclusive to this space; dirty only when writable and the frame is dirty.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal long RestoredPte(Vma area, long frame, long exclusiveEntry)
    {
        var softDirty = Pte.Has(exclusiveEntry, Pte.SoftDirty);
        var uffdWp = Pte.Has(exclusiveEntry, Pte.UffdWp);
        var flags = _pool.Flags(frame);
        var writable = area.IsWritable
            && !uffdWp
            && !(area.SoftDirtyTrackingEnabled && !softDirty)
            && (flags & FrameFlags.AnonExclusive) != 0;
        var bits = (softDirty ? Pte.SoftDirty : 0) | (uffdWp ? Pte.UffdWp : 0);
        if (writable)
        {
            bits |= Pte.Write | ((flags & FrameFlags.Dirty) != 0 ? Pte.Dirty : 0);
        }

        if (!area.IsReadable)
        {
            bits |= Pte.ProtNone;
        }

        return Pte.MakePresent(frame, bits);
    }
}
