using GpuExclusive.Paging;

namespace GpuExclusive;

// What a device mirror asks of the space for ordinary (non-atomic) device access: hmm_range_fault.
public sealed partial class AddressSpace
{
    /// <summary>
    /// Faults <paramref name="page"/> in for a device read or write, as <c>hmm_range_fault</c> with a fault request:
    /// a device-exclusive entry of another device is restored first. Returns the frame mapped now; the caller
    /// validates it against its interval notifier's sequence before using it.
    /// </summary>
    internal AccessStatus FaultForDevice(ulong page, bool isWrite, out long frame)
    {
        frame = -1;
        _mmapLock.EnterReadLock();
        try
        {
            ThrowIfDisposed();
            var area = _areas.Find(page);
            if (area is null)
            {
                return AccessStatus.NotMapped;
            }

            if (isWrite ? !area.IsWritable : !area.IsReadable)
            {
                return AccessStatus.PermissionDenied;
            }

            var leaf = _pageTable.GetOrCreateLeaf(page);
            ref var entry = ref leaf.Entries[PageTableLeaf.IndexOf(page)];
            while (true)
            {
                var pte = Volatile.Read(ref entry);
                if (isWrite ? Pte.IsWritable(pte) : Pte.IsReadable(pte))
                {
                    frame = Pte.Frame(pte);
                    return AccessStatus.Ok;
                }

                HandleFaultLocked(area, page, isWrite);
            }
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    /// <summary>
    /// What a device read or write of the pages <c>[first, last]</c> would meet, checked before anything is copied so
    /// that a refused access changes nothing (a mapping changed concurrently may still cut it short, as on the CPU).
    /// </summary>
    internal AccessStatus ClassifyForDeviceAccess(ulong first, ulong last, bool isWrite)
    {
        _mmapLock.EnterReadLock();
        try
        {
            ThrowIfDisposed();
            for (var page = first; page <= last; page += PagePool.PageSize)
            {
                var area = _areas.Find(page);
                if (area is null)
                {
                    return AccessStatus.NotMapped;
                }

                if (isWrite ? !area.IsWritable : !area.IsReadable)
                {
                    return AccessStatus.PermissionDenied;
                }
            }

            return AccessStatus.Ok;
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    /// <summary>Whether a device atomic at <paramref name="page"/> could ever be granted: mapped, private and writable.</summary>
    internal AccessStatus ClassifyForAtomic(ulong page)
    {
        _mmapLock.EnterReadLock();
        try
        {
            ThrowIfDisposed();
            var area = _areas.Find(page);
            return area is null ? AccessStatus.NotMapped
                : !area.IsWritable || !area.IsPrivate ? AccessStatus.PermissionDenied
                : AccessStatus.Ok;
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    /// <summary>The CPU PTE of <paramref name="page"/> (for invariant checks; racy unless the caller excludes changes).</summary>
    internal long PeekPte(ulong page)
    {
        var leaf = _pageTable.FindLeaf(page);
        return leaf is null ? Pte.None : Volatile.Read(ref leaf.Entries[PageTableLeaf.IndexOf(page)]);
    }
}
