using System.Diagnostics;
using GpuExclusive.Diagnostics;
using GpuExclusive.Memory;
using GpuExclusive.Notifiers;
using GpuExclusive.Paging;
using Microsoft.Extensions.Logging;

namespace GpuExclusive;

/// <summary>
/// A virtual address space over a <see cref="PagePool"/> (the engine's <c>mm_struct</c>): areas (VMAs), a 4-level
/// page table, MMU notifiers, and CPU access through a software MMU with demand-zero, copy-on-write and
/// device-exclusive revocation.
/// </summary>
/// <remarks>
/// All members are thread-safe. Lock order, outermost first: the mmap lock → a frame's page lock → a page-table
/// leaf lock → a reverse-map stripe. Notifier callbacks run with the mmap lock held (read for faults, write for
/// everything else) and never with a leaf lock. CPU accesses on present pages take no lock at all; writers that
/// narrow a PTE wait for them with a software TLB shootdown (<see cref="TlbShootdown"/>).
/// </remarks>
public sealed partial class AddressSpace : IDisposable
{
    /// <summary>Where <see cref="Map"/> starts looking for free space (256 MiB, leaving low addresses unmapped).</summary>
    private const ulong FirstMapAddress = PageTable.FastBase;

    private static int s_nextId;

    private readonly PagePool _pool;

    private readonly ILoggerFactory? _loggerFactory;

    private readonly ILogger _logger;

    // False for the null logger: the revocation fault then skips even the level check.
    private readonly bool _hasLogger;

    // The mmap lock (Linux mmap_lock): held for writing to change _areas or walk many PTEs (map, unmap, protect,
    // fork, …), for reading by faults and Inspect. Guards _areas, _nextMapAddress and the VMAs' fields.
    private readonly MmapLock _mmapLock = new();

    private readonly VmaList _areas = new();

    private ulong _nextMapAddress = FirstMapAddress;

    private readonly PageTable _pageTable;

    // The page table's flat PTEs of the fast span, held here so a CPU access reaches them in one load.
    private readonly unsafe long* _fastPtes;

    // The pool's frame 0, held here so a CPU access turns a PTE into a pointer without loading the pool.
    private readonly unsafe byte* _frameBase;

    private readonly NotifierList _notifiers;

    private volatile bool _disposed;

    /// <summary>Creates an empty address space drawing frames from <paramref name="pool"/>.</summary>
    public AddressSpace(PagePool pool, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(pool);
        _pool = pool;
        _pageTable = new PageTable();
        _notifiers = new NotifierList(_mmapLock);
        unsafe
        {
            _fastPtes = _pageTable.FastPtes;
            _frameBase = pool.BaseAddress;
        }
        _loggerFactory = loggerFactory;
        _logger = EngineLoggers.Create<AddressSpace>(loggerFactory);
        _hasLogger = EngineLoggers.IsReal(_logger);
        Id = Interlocked.Increment(ref s_nextId);
        if (Id >= 1 << 27)
        {
            throw new InvalidOperationException("too many address spaces created in this process (reverse-map ids exhausted)");
        }

        pool.AddUser();
        InvariantRegistry.Add(pool, this);
    }

    /// <summary>The pool this space draws frames from.</summary>
    public PagePool Pool => _pool;

    /// <summary>A process-unique id (used by the reverse map and in logs).</summary>
    internal int Id { get; }

    /// <summary>The page table (for benchmarks that take the access path apart).</summary>
    internal PageTable PageTable => _pageTable;

    internal bool IsDisposed => _disposed;

    /// <summary>Maps <paramref name="length"/> bytes of anonymous memory and returns its page-aligned address (<c>mmap</c>).</summary>
    /// <exception cref="ArgumentException">The length is zero or not whole pages, or the protection is not valid.</exception>
    /// <exception cref="InsufficientMemoryException">No free virtual range is large enough.</exception>
    public ulong Map(ulong length, Protection protection, Sharing sharing = Sharing.Private)
    {
        AddressRange.ValidateLength(length);
        AddressRange.ValidateProtection(protection);
        if (sharing is not (Sharing.Private or Sharing.Shared))
        {
            throw new ArgumentException($"sharing {(int)sharing} is not Private or Shared", nameof(sharing));
        }

        _mmapLock.EnterWriteLock();
        try
        {
            ThrowIfDisposed();
            var start = _areas.FindFreeRange(_nextMapAddress, length, PageTable.AddressLimit)
                ?? _areas.FindFreeRange(FirstMapAddress, length, PageTable.AddressLimit)
                ?? throw new InsufficientMemoryException($"no free virtual range of 0x{length:x} bytes left in the address space");
            var pages = (long)(length >> PagePool.PageShift);
            var sharedObject = sharing == Sharing.Shared ? new SharedMemoryObject(_pool, pages) : null;
            _areas.Insert(new Vma(start, start + length, protection, sharing, sharedObject, 0));
            _nextMapAddress = start + length + PagePool.PageSize;
            SpaceLog.Mapped(_logger, Id, start, start + length, protection, sharing);
            return start;
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }
    }

    /// <summary>Unmaps every page in the range (<c>munmap</c>); parts of it that are not mapped are skipped, as Linux does.</summary>
    /// <exception cref="ArgumentException">Misaligned address, length not whole pages, zero, or overflowing.</exception>
    public void Unmap(ulong address, ulong length)
    {
        var end = AddressRange.Validate(address, length);
        _mmapLock.EnterWriteLock();
        try
        {
            ThrowIfDisposed();
            var overlapping = _areas.Overlapping(address, end);
            if (overlapping.Count == 0)
            {
                return;
            }

            using (_notifiers.Start(new NotifierRange(address, end, NotifierEvent.Unmap) { DropsContents = true }))
            {
                _areas.SplitAt(address);
                _areas.SplitAt(end);
                var released = ZapRangeLocked(address, end);
                foreach (var area in _areas.Overlapping(address, end))
                {
                    _areas.Remove(area);
                    area.SharedObject?.RemoveUser();
                }

                SpaceLog.Unmapped(_logger, Id, address, end, released);
            }
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }
    }

    /// <summary>
    /// Drops the pages of the range (<c>MADV_DONTNEED</c>): private pages read as zero afterwards and their frames go
    /// back to the pool; shared pages keep their contents in the shared object and are only unmapped from this space.
    /// </summary>
    /// <exception cref="ArgumentException">Bad range, or part of it is not mapped.</exception>
    /// <exception cref="InvalidOperationException">Part of the range is mlocked (Linux: EINVAL); nothing changed.</exception>
    public void Discard(ulong address, ulong length)
    {
        var end = AddressRange.Validate(address, length);
        _mmapLock.EnterWriteLock();
        try
        {
            ThrowIfDisposed();
            ThrowIfNotFullyMappedLocked(address, end);
            var locked = _areas.Overlapping(address, end).FirstOrDefault(static a => a.Locked);
            if (locked is not null)
            {
                throw new InvalidOperationException($"cannot discard [0x{address:x}, 0x{end:x}): the area {locked} is mlocked");
            }

            using (_notifiers.Start(new NotifierRange(address, end, NotifierEvent.Clear) { DropsContents = true }))
            {
                ZapRangeLocked(address, end);
            }
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }
    }

    /// <summary>What the page table and the frame say about the page containing <paramref name="address"/>.</summary>
    /// <remarks>
    /// May be called from a notifier callback of this space: it then reads under the lock the callback runs under (a
    /// writer's), or enters for reading past a writer that waits (a fault's callback already holds it for reading).
    /// </remarks>
    public PageInfo Inspect(ulong address)
    {
        if (_mmapLock.IsWriteLockHeld)
        {
            ThrowIfDisposed();
            return InspectLocked(address);
        }

        if (_mmapLock.IsHeldAroundCallback)
        {
            _mmapLock.EnterReadLockBarging();
        }
        else
        {
            _mmapLock.EnterReadLock();
        }

        try
        {
            ThrowIfDisposed();
            return InspectLocked(address);
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    /// <summary>Every area, in address order, as <c>[start, end) protection sharing [locked]</c> (what <c>/proc/pid/maps</c> shows).</summary>
    /// <remarks>For tests and diagnostics: <see cref="Inspect"/> cannot tell a page's protection before it is faulted in.</remarks>
    internal string[] DescribeAreas()
    {
        _mmapLock.EnterReadLock();
        try
        {
            ThrowIfDisposed();
            return [.. _areas.Areas.Select(static a => $"{a}{(a.SoftDirty ? " soft-dirty" : string.Empty)}")];
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    /// <summary>Registers a notifier for every invalidation of this space; dispose the result to unregister.</summary>
    public IDisposable RegisterNotifier(MmuNotifier notifier)
    {
        ArgumentNullException.ThrowIfNull(notifier);
        ThrowIfDisposed();
        _notifiers.Add(notifier);
        return new Registration(() => _notifiers.Remove(notifier));
    }

    /// <summary>
    /// Inserts an interval notifier for <c>[address, address + length)</c>; dispose the result to remove it. Disposing
    /// waits for the invalidations in progress that may call the notifier (Linux's <c>mmu_interval_notifier_remove</c>):
    /// once it returns, the notifier's callback is not running and will not run. It cannot be disposed from a notifier
    /// callback (<see cref="InvalidOperationException"/>, and the notifier stays inserted), and must not be from code
    /// the engine calls while an invalidation is open (a logging provider, a metrics listener): that would wait for
    /// itself.
    /// </summary>
    /// <exception cref="ArgumentException">Bad range (see <see cref="Unmap"/>).</exception>
    /// <exception cref="InvalidOperationException">The notifier is already inserted, in this space or another; nothing changed.</exception>
    public IDisposable InsertIntervalNotifier(MmuIntervalNotifier notifier, ulong address, ulong length)
    {
        ArgumentNullException.ThrowIfNull(notifier);
        var end = AddressRange.Validate(address, length);
        ThrowIfDisposed();
        _notifiers.Add(notifier, address, end);
        return new Registration(() => _notifiers.Remove(notifier));
    }

    /// <summary>
    /// Tears the space down (<c>exit_mmap</c>): fires <see cref="NotifierEvent.Release"/>, unmaps everything and returns
    /// every frame this space alone referenced to the pool.
    /// </summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _mmapLock.EnterWriteLock();
        try
        {
            if (_disposed)
            {
                return;
            }

            var released = 0;
            using (_notifiers.Start(new NotifierRange(0, PageTable.AddressLimit, NotifierEvent.Release) { DropsContents = true }))
            {
                foreach (var area in _areas.Areas)
                {
                    released += ZapRangeLocked(area.Start, area.End);
                    area.SharedObject?.RemoveUser();
                }

                _areas.Clear();
                _disposed = true;
            }

            // Every PTE is empty now: give the flat array's pages back (they read as zeros, which is what a read racing
            // this Dispose must see). The mapping itself goes with the table's finalizer.
            _pageTable.ReleaseFlatPtes();
            InvariantRegistry.Remove(_pool, this);
            _pool.RemoveUser();
            SpaceLog.SpaceDisposed(_logger, Id, released);
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }
    }

    /// <summary>
    /// Clears every PTE in the range, waits out CPU accesses through them, then drops their mappings' references
    /// (<c>zap_pte_range</c> + TLB flush + free). Caller holds the mmap lock for writing and has fired the notifier.
    /// </summary>
    /// <returns>The number of mappings dropped.</returns>
    private int ZapRangeLocked(ulong start, ulong end)
    {
        AssertMmapLockHeld();
        var zapped = new List<(long Frame, ulong Address)>();
        _pageTable.ForEachLeaf(start, end, ref zapped, static (PageTableLeaf leaf, int first, int last, ref List<(long Frame, ulong Address)> list) =>
        {
            using (leaf.Lock.EnterScope())
            {
                leaf.BeginChange();
                for (var i = first; i <= last; i++)
                {
                    if (Volatile.Read(ref leaf.Entries[i]) == Pte.None)
                    {
                        continue;
                    }

                    var old = Interlocked.Exchange(ref leaf.Entries[i], Pte.None);
                    list.Add((Pte.Frame(old), leaf.AddressOf(i)));
                }

                leaf.EndChange();
            }
        });

        if (zapped.Count == 0)
        {
            return 0;
        }

        // Frames may be reused once the last reference goes: no access may still be writing through the old PTEs.
        TlbShootdown.Flush();
        foreach (var (frame, address) in zapped)
        {
            DropMapping(frame, address);
        }

        return zapped.Count;
    }

    /// <summary>Undoes one mapping of <paramref name="frame"/> at <paramref name="address"/>: rmap, map count, reference.</summary>
    private void DropMapping(long frame, ulong address)
    {
        _pool.Rmap.Remove(frame, Id, address >> PagePool.PageShift);
        var mapCount = Interlocked.Decrement(ref _pool.Meta(frame).MapCount);
        Debug.Assert(mapCount >= 0, "map count below zero");
        if (mapCount == 0)
        {
            _pool.ClearFlags(frame, FrameFlags.Mlocked);
        }

        _pool.Put(frame);
    }

    /// <summary>Adds one mapping of <paramref name="frame"/> at <paramref name="address"/>; the caller supplies the reference.</summary>
    private void AddMapping(long frame, ulong address)
    {
        Interlocked.Increment(ref _pool.Meta(frame).MapCount);
        _pool.Rmap.Add(frame, Id, address >> PagePool.PageShift);
    }

    private PageInfo InspectLocked(ulong address)
    {
        AssertMmapLockHeld();
        var area = _areas.Find(address);
        if (area is null)
        {
            return new PageInfo(PageState.Unmapped, false, false, false, false, -1, 0, 0);
        }

        var leaf = _pageTable.FindLeaf(address);
        var pte = leaf is null ? Pte.None : Volatile.Read(ref leaf.Entries[PageTableLeaf.IndexOf(address)]);
        if (Pte.IsNone(pte))
        {
            return new PageInfo(PageState.NotPresent, false, false, false, area.SoftDirty, -1, 0, 0);
        }

        var frame = Pte.Frame(pte);
        ref var meta = ref _pool.Meta(frame);
        var mapCount = Volatile.Read(ref meta.MapCount);
        var refCount = Volatile.Read(ref meta.RefCount);
        var softDirty = Pte.Has(pte, Pte.SoftDirty) || area.SoftDirty;
        if (Pte.IsDeviceExclusive(pte))
        {
            var frameDirty = (_pool.Flags(frame) & FrameFlags.Dirty) != 0;
            return new PageInfo(PageState.DeviceExclusive, false, frameDirty, false, softDirty, frame, mapCount, refCount);
        }

        return new PageInfo(PageState.Present, Pte.IsWritable(pte), Pte.Has(pte, Pte.Dirty), Pte.Has(pte, Pte.Young), softDirty, frame, mapCount, refCount);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private sealed class Registration(Action remove) : IDisposable
    {
        private Action? _remove = remove;

        // Claimed once, so concurrent or repeated disposals remove once; a removal refused (from a callback) is put
        // back, so it can be retried.
        public void Dispose()
        {
            var remove = Interlocked.Exchange(ref _remove, null);
            if (remove is null)
            {
                return;
            }

            try
            {
                remove();
            }
            catch
            {
                Interlocked.CompareExchange(ref _remove, remove, null);
                throw;
            }
        }
    }
}
