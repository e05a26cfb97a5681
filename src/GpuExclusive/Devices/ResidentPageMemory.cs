using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;

namespace GpuExclusive.Devices;

/// <summary>
/// One device's memory for device-resident pages (docs/architecture.md, "device-resident pages"): a fixed number of
/// 4 KiB slots (<see cref="EngineSettings.DeviceResidentPages"/>) in the accelerator's own memory — GPU memory on CUDA, a
/// separate buffer on the CPU accelerator — that a grant of a resident mirror copies its page into, and a revocation
/// copies it back from. It also remembers, per slot, which mirror holds which page of which frame, and when a batch
/// last used it, so that the least recently used page can be handed back to the CPU when no slot is free.
/// </summary>
/// <remarks>
/// Thread-safe. Its lock is the innermost there is (docs/architecture.md, "lock order"): the copies run under it too,
/// since ILGPU's streams are not meant for concurrent use, but it never waits for anything else. Copies use a stream of
/// their own (non-blocking on CUDA), so that they run while a kernel works on other pages.
/// </remarks>
internal sealed class ResidentPageMemory : IDisposable
{
    private const int LongsPerPage = PagePool.PageSize / sizeof(long);

    private readonly Accelerator _accelerator;
    private readonly object _lock = new();
    private readonly Slot[] _slots;

    // When a batch last used each slot (a Stopwatch timestamp): written without the lock on every batch's translation,
    // read for the eviction order, where a stale value only makes the order slightly less exact.
    private readonly long[] _lastUse;
    private readonly Stack<int> _free;

    // A page's worth of device memory, for kernels launched while no resident page exists: their views must be valid.
    private readonly MemoryBuffer1D<long, Stride1D.Dense> _placeholder;
    private MemoryBuffer1D<long, Stride1D.Dense>? _pages;
    private AcceleratorStream? _stream;
    private bool _disposed;

    internal ResidentPageMemory(Accelerator accelerator, int capacity)
    {
        _accelerator = accelerator;
        _slots = new Slot[capacity];
        _lastUse = new long[capacity];
        _free = new Stack<int>(Enumerable.Range(0, capacity).Reverse());
        _placeholder = accelerator.Allocate1D<long>(LongsPerPage);
    }

    /// <summary>Slots in all (<see cref="EngineSettings.DeviceResidentPages"/>).</summary>
    internal int Capacity => _slots.Length;

    private long _writtenBack;
    private long _dropped;
    private long _evictions;

    /// <summary>Pages copied back to their frames, in all.</summary>
    internal long WrittenBack => Interlocked.Read(ref _writtenBack);

    /// <summary>Pages freed without a copy back, in all: their contents were thrown away (unmap, discard, teardown).</summary>
    internal long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Pages handed back to the CPU to make room, in all.</summary>
    internal long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Slots holding a page now.</summary>
    internal int InUse
    {
        get
        {
            lock (_lock)
            {
                return _slots.Length - _free.Count;
            }
        }
    }

    /// <summary>The pages as the kernels see them (bytes from slot × 4096): the real memory once a page was made resident.</summary>
    internal ArrayView<long> View => (Volatile.Read(ref _pages) ?? _placeholder).View;

    /// <summary>
    /// Allocates the slots' device memory, if not yet: called when a resident mirror is created, before any kernel of
    /// it can run (a kernel's views are fixed at its launch, and one launched on the placeholder must never meet a
    /// resident entry).
    /// </summary>
    internal void EnsureAllocated()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_pages is null)
            {
                Volatile.Write(ref _pages, _accelerator.Allocate1D<long>((long)_slots.Length * LongsPerPage));
            }
        }
    }

    /// <summary>
    /// Takes a free slot for <paramref name="address"/> of <paramref name="owner"/> (frame <paramref name="frame"/>),
    /// whose device memory <see cref="EnsureAllocated"/> allocated. False when every slot is taken: the caller hands the
    /// least recently used pages back to the CPU (<see cref="LeastRecentlyUsed"/>) beforehand, and maps in place what
    /// still finds no slot.
    /// </summary>
    internal bool TryTake(object owner, ulong address, long frame, out int slot)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_free.TryPop(out slot))
            {
                return false;
            }

            Debug.Assert(_pages is not null, "resident pages are allocated when a resident mirror is created");
            _slots[slot] = new Slot(owner, address, frame);
            Volatile.Write(ref _lastUse[slot], Stopwatch.GetTimestamp());
            return true;
        }
    }

    /// <summary>Gives a slot back.</summary>
    internal void Release(int slot)
    {
        lock (_lock)
        {
            Debug.Assert(_slots[slot].Owner is not null, $"resident slot {slot} released twice");
            _slots[slot] = default;
            _free.Push(slot);
        }
    }

    /// <summary>Marks the slot used by a batch at <paramref name="now"/> (for the eviction order; no lock).</summary>
    internal void Touch(int slot, long now) => Volatile.Write(ref _lastUse[slot], now);

    /// <summary>The frame whose page slot <paramref name="slot"/> holds.</summary>
    internal long FrameOf(int slot)
    {
        lock (_lock)
        {
            return _slots[slot].Frame;
        }
    }

    /// <summary>True when slot <paramref name="slot"/> holds page <paramref name="address"/> of <paramref name="owner"/>.</summary>
    internal bool IsHeldBy(int slot, object owner, ulong address)
    {
        lock (_lock)
        {
            return ReferenceEquals(_slots[slot].Owner, owner) && _slots[slot].Address == address;
        }
    }

    /// <summary>
    /// Up to <paramref name="count"/> pages last used before <paramref name="usedBefore"/>, least recently used first:
    /// the ones to hand back to the CPU when slots run out.
    /// </summary>
    internal List<(object Owner, ulong Address)> LeastRecentlyUsed(int count, long usedBefore)
    {
        lock (_lock)
        {
            var candidates = new List<(long LastUse, object Owner, ulong Address)>();
            for (var slot = 0; slot < _slots.Length; slot++)
            {
                var lastUse = Volatile.Read(ref _lastUse[slot]);
                if (_slots[slot].Owner is { } owner && lastUse < usedBefore)
                {
                    candidates.Add((lastUse, owner, _slots[slot].Address));
                }
            }

            return [.. candidates.OrderBy(static c => c.LastUse).Take(count).Select(static c => (c.Owner, c.Address))];
        }
    }

    /// <summary>Copies a whole page from host memory into slot <paramref name="slot"/> (a grant).</summary>
    internal unsafe void CopyIn(int slot, byte* page) => CopyIn(slot, 0, new ReadOnlySpan<byte>(page, PagePool.PageSize));

    /// <summary>Copies slot <paramref name="slot"/> back to its page's frame at <paramref name="page"/> (a revocation), and frees the slot.</summary>
    internal unsafe void WriteBackAndRelease(int slot, byte* page)
    {
        CopyOut(slot, 0, new Span<byte>(page, PagePool.PageSize));
        Interlocked.Increment(ref _writtenBack);
        Release(slot);
    }

    /// <summary>Frees slot <paramref name="slot"/> without a copy back: its page's contents were thrown away.</summary>
    internal void DropAndRelease(int slot)
    {
        Interlocked.Increment(ref _dropped);
        Release(slot);
    }

    /// <summary>Counts a page handed back to the CPU to make room.</summary>
    internal void CountEviction() => Interlocked.Increment(ref _evictions);

    /// <summary>Writes <paramref name="source"/> into slot <paramref name="slot"/> at <paramref name="offset"/> bytes into the page.</summary>
    internal void CopyIn(int slot, int offset, ReadOnlySpan<byte> source)
    {
        Debug.Assert(offset >= 0 && offset + source.Length <= PagePool.PageSize, "a copy stays inside its page");
        lock (_lock)
        {
            var stream = StreamLocked();
            ArrayView1D<byte, Stride1D.Dense> bytes = SlotBytes(slot, offset, source.Length);
            bytes.CopyFromCPU(stream, in source);
            stream.Synchronize();
        }
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes of slot <paramref name="slot"/> from <paramref name="offset"/> bytes into the page.</summary>
    internal void CopyOut(int slot, int offset, Span<byte> destination)
    {
        Debug.Assert(offset >= 0 && offset + destination.Length <= PagePool.PageSize, "a copy stays inside its page");
        lock (_lock)
        {
            var stream = StreamLocked();
            ArrayView1D<byte, Stride1D.Dense> bytes = SlotBytes(slot, offset, destination.Length);
            bytes.CopyToCPU(stream, destination);
            stream.Synchronize();
        }
    }

    /// <summary>Frees the device memory (every page must have been handed back).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _stream?.Dispose();
            _pages?.Dispose();
            _placeholder.Dispose();
        }
    }

    private ArrayView<byte> SlotBytes(int slot, int offset, int length) =>
        _pages!.View.AsContiguous().Cast<byte>().SubView(((long)slot << PagePool.PageShift) + offset, length);

    private AcceleratorStream StreamLocked()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);

        // CUDA copies run in the context current on the calling thread; a stream of their own keeps them from waiting
        // for (or holding up) a kernel on the default stream.
        _accelerator.Bind();
        return _stream ??= _accelerator.CreateStream();
    }

    /// <summary>Who holds a slot: the mirror, the page's address in its space, and the page's frame in the pool.</summary>
    private readonly record struct Slot(object? Owner, ulong Address, long Frame);
}
