using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GpuExclusive.Diagnostics;
using GpuExclusive.Memory;
using GpuExclusive.Native;
using Microsoft.Extensions.Logging;

namespace GpuExclusive;

/// <summary>
/// Pinned, page-aligned host memory for a fixed number of 4096-byte frames: the engine's physical memory.
/// Every <see cref="AddressSpace"/> and device draws its frames from one pool.
/// </summary>
/// <remarks>
/// On Linux the frames come from one anonymous <c>mmap</c>, <c>mlock</c>ed when the process may (otherwise a
/// warning is logged and the pool works unpinned). Frames are zeroed when allocated, so a freed frame's contents
/// never reach a new mapping. All members are thread-safe.
/// </remarks>
public sealed unsafe class PagePool : IDisposable
{
    /// <summary>Bytes in a page and in a frame.</summary>
    public const int PageSize = 4096;

    /// <summary>log2 of <see cref="PageSize"/>.</summary>
    internal const int PageShift = 12;

    private readonly ILogger _logger;
    private readonly byte* _base;
    private readonly bool _fromMmap;
    private readonly bool _mlocked;
    private readonly FrameMeta[] _meta;

    // Freed frames as a stack linked through the frames themselves: the first 8 bytes of a free frame hold the next
    // free frame's number (-1 ends the list), so the free list costs no metadata. Frames from _neverUsed up have
    // never been handed out: still zero from mmap, and untouched, so a large pool costs nothing until used.
    // Both guarded by _freeLock.
    private readonly Lock _freeLock = new();
    private long _freeHead = -1;
    private long _neverUsed;

    // Frames that may still be allocated: free frames minus reservations. Changed only with Interlocked.
    private long _available;
    // Address spaces using the pool: it refuses to be disposed under them.
    private int _users;
    private int _disposed;

    /// <summary>Creates a pool of <paramref name="capacityPages"/> frames.</summary>
    /// <param name="capacityPages">Frames in the pool, 1 to 2^31-1.</param>
    /// <param name="loggerFactory">Where the pool logs; none by default.</param>
    /// <param name="lockMemory">Try to <c>mlock</c> the pool so the frames stay resident (the default).</param>
    /// <exception cref="ArgumentOutOfRangeException">The capacity is not positive or too large.</exception>
    /// <exception cref="InsufficientMemoryException">The host could not provide the memory.</exception>
    public PagePool(long capacityPages, ILoggerFactory? loggerFactory = null, bool lockMemory = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityPages, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacityPages, int.MaxValue);
        _logger = EngineLoggers.Create<PagePool>(loggerFactory);
        Capacity = capacityPages;
        var bytes = (nuint)capacityPages * PageSize;

        if (LinuxMemory.IsSupported)
        {
            var address = LinuxMemory.Mmap(0, bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous, -1, 0);
            if (address == LinuxMemory.MapFailed)
            {
                throw new InsufficientMemoryException($"mmap of a {capacityPages}-page pool ({bytes} bytes) failed with errno {Marshal.GetLastPInvokeError()}");
            }

            _base = (byte*)address;
            _fromMmap = true;
            if (lockMemory)
            {
                _mlocked = LinuxMemory.Mlock(address, bytes) == 0;
                if (!_mlocked)
                {
                    PoolLog.PoolMlockFailed(_logger, (long)bytes, Marshal.GetLastPInvokeError());
                }
            }
        }
        else
        {
            _base = (byte*)NativeMemory.AlignedAlloc(bytes, PageSize);
            NativeMemory.Clear(_base, bytes);
            PoolLog.PoolNotPinned(_logger);
        }

        _meta = new FrameMeta[capacityPages];
        _available = capacityPages;
        Rmap = new ReverseMap(_meta);
        PoolLog.PoolCreated(_logger, capacityPages, (long)bytes, (nint)_base, _mlocked);
    }

    /// <summary>Frames in the pool.</summary>
    public long Capacity { get; }

    /// <summary>Frames free for allocation now.</summary>
    public long FreePages => Volatile.Read(ref _available);

    /// <summary>True when the pool memory is <c>mlock</c>ed.</summary>
    public bool IsPinned => _mlocked;

    /// <summary>Bytes of engine metadata per frame (frame metadata; the PTE is counted by the page table).</summary>
    internal static int MetadataBytesPerFrame => Unsafe.SizeOf<FrameMeta>();

    internal ReverseMap Rmap { get; }

    /// <summary>The address of the pool's first byte (frame 0).</summary>
    internal byte* Base => _base;

    /// <summary>Address spaces using the pool (disposal refuses while any does).</summary>
    internal int Users => Volatile.Read(ref _users);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal byte* FrameAddress(long frame) => _base + (frame << PageShift);

    /// <summary>The address of frame 0: <see cref="FrameAddress"/> is this plus the frame's byte offset.</summary>
    internal byte* BaseAddress => _base;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref FrameMeta Meta(long frame) => ref _meta[frame];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal FrameFlags Flags(long frame) => (FrameFlags)Volatile.Read(ref _meta[frame].State) & FrameFlags.All;

    internal void SetFlags(long frame, FrameFlags flags) => Interlocked.Or(ref _meta[frame].State, (int)flags);

    internal void ClearFlags(long frame, FrameFlags flags) => Interlocked.And(ref _meta[frame].State, ~(int)flags);

    /// <summary>Allocates a zeroed frame holding one reference.</summary>
    /// <exception cref="InsufficientMemoryException">No frame is free.</exception>
    internal long Allocate()
    {
        if (!TryTakeAvailable(1))
        {
            throw new InsufficientMemoryException($"page pool exhausted: all {Capacity} frames are in use");
        }

        return PopZeroed();
    }

    /// <summary>Sets aside <paramref name="count"/> frames for <see cref="AllocateReserved"/>, or reserves nothing.</summary>
    internal bool TryReserve(long count) => TryTakeAvailable(count);

    /// <summary>Allocates one of the frames set aside by <see cref="TryReserve"/>.</summary>
    internal long AllocateReserved() => PopZeroed();

    /// <summary>Returns reserved frames that were not allocated.</summary>
    internal void CancelReservation(long count) => Interlocked.Add(ref _available, count);

    /// <summary>Takes one more reference to a frame already referenced by the caller (<c>folio_get</c>).</summary>
    internal void Get(long frame)
    {
        var after = Interlocked.Increment(ref _meta[frame].RefCount);
        Debug.Assert(after > 1, "Get on a free frame");
    }

    /// <summary>Takes a reference unless the frame is already free (<c>folio_try_get</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryGet(long frame)
    {
        ref var refCount = ref _meta[frame].RefCount;
        var current = Volatile.Read(ref refCount);
        while (current > 0)
        {
            var seen = Interlocked.CompareExchange(ref refCount, current + 1, current);
            if (seen == current)
            {
                return true;
            }

            current = seen;
        }

        return false;
    }

    /// <summary>Drops a reference; the last one returns the frame to the pool (<c>folio_put</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Put(long frame)
    {
        var after = Interlocked.Decrement(ref _meta[frame].RefCount);
        Debug.Assert(after >= 0, "Put below zero");
        if (after == 0)
        {
            Free(frame);
        }
    }

    // The last reference went: back to the free list. Out of line, so that Put inlines into the paths that drop a
    // transient reference (every revocation takes one).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Free(long frame)
    {
        ref var meta = ref _meta[frame];
        Debug.Assert(meta.MapCount == 0, "frame freed while still mapped");
        Debug.Assert(meta.Rmap == 0, "frame freed with reverse-map entries");
        Debug.Assert(meta.State == 0 || (meta.State & ~(int)FrameFlags.All) == 0, "frame freed while locked or waited for");
        Volatile.Write(ref meta.State, 0);
        lock (_freeLock)
        {
            *(long*)FrameAddress(frame) = _freeHead;
            _freeHead = frame;
        }

        Interlocked.Increment(ref _available);
    }

    /// <summary>
    /// Raised once when the pool is disposed, before its memory is unmapped: devices that registered the pool with a
    /// driver (CUDA's <c>cuMemHostRegister</c>) unregister it here, so a later mapping at the same address is not
    /// mistaken for registered memory.
    /// </summary>
    internal event Action<PagePool>? Disposing;

    /// <summary>Counts a new user of the pool (an address space); refused once the pool is disposed.</summary>
    internal void AddUser()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        Interlocked.Increment(ref _users);
    }

    /// <summary>Counts a user out.</summary>
    internal void RemoveUser() => Interlocked.Decrement(ref _users);

    /// <summary>Frees the pool's memory.</summary>
    /// <exception cref="InvalidOperationException">Address spaces still use the pool, or frames are still allocated.</exception>
    public void Dispose()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        var live = Volatile.Read(ref _users);
        if (live > 0)
        {
            throw new InvalidOperationException($"page pool still used by {live} address space(s); dispose them before the pool");
        }

        var inUse = Capacity - FreePages;
        if (inUse > 0)
        {
            throw new InvalidOperationException($"page pool still has {inUse} frame(s) in use; dispose their owners before the pool");
        }

        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Disposing?.Invoke(this);
        var bytes = (nuint)Capacity * PageSize;
        if (_fromMmap)
        {
            LinuxMemory.Munmap((nint)_base, bytes);
        }
        else
        {
            NativeMemory.AlignedFree(_base);
        }
    }

    private bool TryTakeAvailable(long count)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var current = Volatile.Read(ref _available);
        while (current >= count)
        {
            var seen = Interlocked.CompareExchange(ref _available, current - count, current);
            if (seen == current)
            {
                return true;
            }

            current = seen;
        }

        return false;
    }

    private long PopZeroed()
    {
        long frame;
        bool recycled;
        lock (_freeLock)
        {
            recycled = _freeHead >= 0;
            if (recycled)
            {
                frame = _freeHead;
                _freeHead = *(long*)FrameAddress(frame);
            }
            else
            {
                Debug.Assert(_neverUsed < Capacity, "available count and free list disagree");
                frame = _neverUsed++;
            }
        }

        ref var meta = ref _meta[frame];
        Debug.Assert(meta.RefCount == 0 && meta.MapCount == 0, "allocated frame was not free");
        if (recycled)
        {
            // A freed frame's contents (and our free-list link) must never reach a new mapping.
            NativeMemory.Clear(FrameAddress(frame), PageSize);
        }

        meta.State = 0;
        Volatile.Write(ref meta.RefCount, 1);
        return frame;
    }
}
