using System.Diagnostics;
using System.Runtime.CompilerServices;
using GpuExclusive.Diagnostics;
using GpuExclusive.Memory;
using GpuExclusive.Paging;

namespace GpuExclusive;

// The CPU fault handler (Linux handle_mm_fault): demand-zero, copy-on-write, and device-exclusive restore.
public sealed partial class AddressSpace
{
    /// <summary>Resolves a fault at <paramref name="address"/> so that the access can be retried, or throws.</summary>
    /// <returns>
    /// A frame a device-exclusive restore left locked and referenced: the caller retries its access once before
    /// <see cref="ReleaseRestored"/>, so that no device can take the page back in between; -1 when none.
    /// </returns>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private long HandleFault(ulong address, bool isWrite)
    {
        Debug.Assert(!TlbShootdown.IsInsideAccess, "the fault path may block: it must run outside an access");
        EngineMetrics.CpuFaults.Add(1);
        _mmapLock.EnterReadLock();
        try
        {
            ThrowIfDisposed();
            var area = _areas.Find(address)
                ?? throw new MemoryAccessException(address, isWrite, "no mapping covers the address");
            if (isWrite ? !area.IsWritable : !area.IsReadable)
            {
                throw new MemoryAccessException(address, isWrite, $"the mapping {area} does not allow it");
            }

            t_faultingAccesses++;
            try
            {
                return HandleFaultLocked(area, address & ~AddressRange.PageMask, isWrite, reservation: null, keepRestoredLocked: true);
            }
            finally
            {
                t_faultingAccesses--;
            }
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    /// <summary>One step of fault handling for an access the area allows. Caller holds the mmap lock (either mode).</summary>
    /// <returns>With <paramref name="keepRestoredLocked"/>, the frame a device-exclusive restore kept locked (see <see cref="HandleFault"/>); else -1.</returns>
    private long HandleFaultLocked(Vma area, ulong page, bool isWrite, FrameReservation? reservation = null, bool keepRestoredLocked = false)
    {
        AssertMmapLockHeld();
        var leaf = _pageTable.GetOrCreateLeaf(page);
        var pte = Volatile.Read(ref leaf.Entries[PageTableLeaf.IndexOf(page)]);
        if (Pte.IsNone(pte))
        {
            DemandFaultLocked(area, leaf, page, isWrite, reservation);
        }
        else if (Pte.IsDeviceExclusive(pte))
        {
            RestoreDeviceExclusiveLocked(area, leaf, page, pte, mayBlock: true, owner: null, keepRestoredLocked, out var kept);
            return kept;
        }
        else if (isWrite && !Pte.IsWritable(pte))
        {
            WriteProtectFaultLocked(area, leaf, page, pte, reservation);
        }

        // Otherwise another thread resolved it already: retrying the access is all that is left.
        return -1;
    }

    /// <summary>First touch: map a zeroed private frame, or the shared object's frame (<c>do_anonymous_page</c>, <c>do_shared_fault</c>).</summary>
    private void DemandFaultLocked(Vma area, PageTableLeaf leaf, ulong page, bool isWrite, FrameReservation? reservation)
    {
        AssertMmapLockHeld();
        SpaceLog.Fault(_logger, Id, "demand", page, isWrite);
        ref var entry = ref leaf.Entries[PageTableLeaf.IndexOf(page)];
        var accessed = Pte.Young | (isWrite ? Pte.Dirty | Pte.SoftDirty : 0);
        // Under soft-dirty tracking a page is mapped writable only by a write: a read maps it read-only, so the first
        // write — by the CPU, a grant or a device write, which all fault for write — marks it soft-dirty (as Linux).
        var writable = area.IsWritable && (isWrite || !area.SoftDirtyTrackingEnabled) ? Pte.Write : 0;
        var mlocked = area.Locked ? FrameFlags.Mlocked : FrameFlags.None;
        if (area.IsPrivate)
        {
            var frame = reservation?.Allocate() ?? _pool.Allocate();
            var mapped = false;
            using (leaf.Lock.EnterScope())
            {
                if (Volatile.Read(ref entry) == Pte.None)
                {
                    _pool.SetFlags(frame, FrameFlags.Anon | FrameFlags.AnonExclusive | mlocked);
                    AddMapping(frame, page);
                    Volatile.Write(ref entry, Pte.MakePresent(frame, accessed | writable));
                    mapped = true;
                }
            }

            // Counted outside the PTE spinlock: a metrics listener's callback runs inside Add.
            if (mapped)
            {
                EngineMetrics.DemandZeroFaults.Add(1);
            }
            else
            {
                _pool.Put(frame); // another thread mapped the page first
            }

            return;
        }

        var shared = area.SharedObject!.GetOrAllocate(area.ObjectPageOf(page), reservation);
        var mappedShared = false;
        using (leaf.Lock.EnterScope())
        {
            if (Volatile.Read(ref entry) == Pte.None)
            {
                _pool.Get(shared);
                _pool.SetFlags(shared, mlocked);
                AddMapping(shared, page);
                Volatile.Write(ref entry, Pte.MakePresent(shared, accessed | writable));
                mappedShared = true;
            }
        }

        if (mappedShared)
        {
            EngineMetrics.DemandZeroFaults.Add(1);
        }
    }

    /// <summary>
    /// A write to a present read-only PTE in a writable area (<c>do_wp_page</c>): shared pages and private frames this
    /// space alone maps are made writable in place; private frames others still map are copied.
    /// </summary>
    private void WriteProtectFaultLocked(Vma area, PageTableLeaf leaf, ulong page, long pte, FrameReservation? reservation)
    {
        AssertMmapLockHeld();
        var frame = Pte.Frame(pte);
        if (!area.IsPrivate || CanReuseAnonFrame(frame))
        {
            SpaceLog.Fault(_logger, Id, "write-protect reuse", page, true);
            if (MakeWritableIfUnchanged(leaf, page, frame))
            {
                EngineMetrics.CowReuses.Add(area.IsPrivate ? 1 : 0);
            }

            return;
        }

        CopyOnWriteLocked(area, leaf, page, frame, reservation);
    }

    /// <summary>
    /// True when a private frame may be written in place: it is known exclusive, or — checked under its page lock —
    /// this mapping is its only mapping and reference (<c>wp_can_reuse_anon_folio</c>). Marks it exclusive then.
    /// </summary>
    private bool CanReuseAnonFrame(long frame)
    {
        if ((_pool.Flags(frame) & FrameFlags.AnonExclusive) != 0)
        {
            return true;
        }

        // A transient reference keeps the frame ours while we wait for its lock even if a racing COW replaces our PTE.
        if (!_pool.TryGet(frame))
        {
            return false;
        }

        ref var meta = ref _pool.Meta(frame);
        FrameLock.Lock(ref meta.State, frame);
        try
        {
            // Our mapping's reference plus our transient one: nobody else can see the frame.
            var alone = Volatile.Read(ref meta.MapCount) == 1 && Volatile.Read(ref meta.RefCount) == 2;
            if (alone)
            {
                _pool.SetFlags(frame, FrameFlags.AnonExclusive);
            }

            return alone;
        }
        finally
        {
            FrameLock.Unlock(ref meta.State, frame);
            _pool.Put(frame);
        }
    }

    private bool MakeWritableIfUnchanged(PageTableLeaf leaf, ulong page, long frame)
    {
        ref var entry = ref leaf.Entries[PageTableLeaf.IndexOf(page)];
        using (leaf.Lock.EnterScope())
        {
            while (true)
            {
                var pte = Volatile.Read(ref entry);
                if (!Pte.IsPresent(pte) || Pte.Frame(pte) != frame || Pte.Has(pte, Pte.ProtNone | Pte.UffdWp))
                {
                    return false;
                }

                var updated = pte | Pte.Write | Pte.Dirty | Pte.SoftDirty | Pte.Young;
                if (updated == pte || Interlocked.CompareExchange(ref entry, updated, pte) == pte)
                {
                    return true;
                }
            }
        }
    }

    /// <summary>Copies a shared private frame for this space and maps the copy writable (<c>wp_page_copy</c>).</summary>
    private unsafe void CopyOnWriteLocked(Vma area, PageTableLeaf leaf, ulong page, long oldFrame, FrameReservation? reservation)
    {
        AssertMmapLockHeld();
        SpaceLog.Fault(_logger, Id, "copy-on-write", page, true);
        if (!_pool.TryGet(oldFrame))
        {
            return; // the PTE changed under us and the frame is gone: retry
        }

        try
        {
            var newFrame = reservation?.Allocate() ?? _pool.Allocate();
            // Every mapping of the old frame is read-only, so its contents cannot change while we copy.
            Buffer.MemoryCopy(_pool.FrameAddress(oldFrame), _pool.FrameAddress(newFrame), PagePool.PageSize, PagePool.PageSize);
            var replaced = false;
            using (_notifiers.Start(new NotifierRange(page, page + PagePool.PageSize, NotifierEvent.Clear)))
            {
                ref var entry = ref leaf.Entries[PageTableLeaf.IndexOf(page)];
                using (leaf.Lock.EnterScope())
                {
                    var pte = Volatile.Read(ref entry);
                    if (Pte.IsPresent(pte) && Pte.Frame(pte) == oldFrame && !Pte.Has(pte, Pte.Write))
                    {
                        _pool.SetFlags(newFrame, FrameFlags.Anon | FrameFlags.AnonExclusive | (area.Locked ? FrameFlags.Mlocked : FrameFlags.None));
                        AddMapping(newFrame, page);
                        leaf.BeginChange();
                        Interlocked.Exchange(ref entry, Pte.MakePresent(newFrame, Pte.Write | Pte.Dirty | Pte.SoftDirty | Pte.Young));
                        leaf.EndChange();
                        replaced = true;
                    }
                }

                if (replaced)
                {
                    // Readers of the old frame through the old PTE finish before we drop our mapping of it.
                    TlbShootdown.Flush();
                    DropMapping(oldFrame, page);
                    EngineMetrics.CowCopies.Add(1);
                }
                else
                {
                    _pool.Put(newFrame);
                }
            }
        }
        finally
        {
            _pool.Put(oldFrame);
        }
    }
}
