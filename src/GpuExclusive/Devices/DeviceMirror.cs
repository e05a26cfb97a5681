using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GpuExclusive.Devices;
using GpuExclusive.Diagnostics;
using GpuExclusive.Kernels;
using GpuExclusive.Paging;
using ILGPU.Runtime;
using Microsoft.Extensions.Logging;

namespace GpuExclusive;

/// <summary>
/// A device's view of one address space (nouveau's SVM mirror, <c>lib/test_hmm</c>'s dmirror): a device page table
/// the kernels translate through, kept coherent with the CPU page table by an interval notifier.
/// </summary>
/// <remarks>
/// Atomics need an Atomic device PTE, obtained only by a grant (<see cref="MakeExclusive"/>, or a device fault during
/// <see cref="Run(ReadOnlySpan{AtomicOp}, Span{long})"/>); plain device reads and writes mirror the CPU PTE (<c>hmm_range_fault</c>) without exclusivity.
/// Every invalidation of the space except this device's own <see cref="NotifierEvent.Exclusive"/> events clears the
/// affected device PTEs and waits until no kernel thread is still using them (hazard words) before the callback
/// returns; the running kernel is not stopped. Thread-safe; several threads may <see cref="Run(ReadOnlySpan{AtomicOp}, Span{long})"/> at once (batches on
/// one device take turns).
/// </remarks>
public sealed partial class DeviceMirror : IDisposable
{
    private const int InitialSlots = 1024;

    private readonly ExclusiveDevice _device;
    private readonly MemoryBuffer _pool;
    private readonly ILogger _logger;
    // False for the null logger: the one-page invalidation (every revocation) then skips even the level check.
    private readonly bool _hasLogger;
    private readonly IDisposable _registration;

    // The mirror lock (the driver mutex of nouveau/test_hmm): guards _slots, _slotPages, _slotCount, the contents of
    // _table written by the host, the swap of _table, and _disposed. Lock order: mmap lock → this lock. Never held
    // while calling into the address space.
    private readonly object _lock = new();
    private readonly Dictionary<ulong, int> _slots = [];
    private ulong[] _slotPages = new ulong[InitialSlots];
    private int _slotCount;
    private volatile HostMappedArray<long> _table;
    private bool _disposed;

    // Slots of pages in the engine's fast range (where mappings go first), indexed by page - FastBase page, as slot + 1
    // (0 = none): a batch resolves most ops without hashing. Grown on demand. Guarded by _lock.
    private int[] _fastSlots = new int[InitialSlots];

    // Batches of finished runs, kept for reuse (guarded by itself).
    private const int MaxSpareBatches = 4;
    // Larger batches are freed after use rather than kept (44 bytes an op: a 4 M-op batch holds ~180 MiB). Up to that,
    // a run reuses a batch instead of mapping and faulting its memory in again, which cost more than the run itself.
    private const int MaxSpareBatchOps = 4 << 20;
    private readonly List<DeviceBatch> _spareBatches = [];

    internal DeviceMirror(ExclusiveDevice device, AddressSpace space, MemoryBuffer pool)
    {
        _device = device;
        _pool = pool;
        Space = space;
        _logger = EngineLoggers.Create<DeviceMirror>(device.LoggerFactory);
        _hasLogger = EngineLoggers.IsReal(_logger);
        _table = device.AllocateShared<long>(InitialSlots);
        _registration = space.InsertIntervalNotifier(new MirrorNotifier(this), 0, PageTable.AddressLimit);
        space.AttachMirror(this);
    }

    /// <summary>The device this mirror belongs to.</summary>
    public ExclusiveDevice Device => _device;

    internal AddressSpace Space { get; }

    internal bool IsDisposed => Volatile.Read(ref _disposed);

    /// <summary>
    /// Makes every page of the range device-exclusive to this device with atomic permission (DESIGN §3.1), waiting for
    /// busy page locks, and returns the number of pages granted (all of them, unless an invalidation keeps racing).
    /// </summary>
    /// <exception cref="ArgumentException">Misaligned address, length not whole pages, zero, or overflowing.</exception>
    /// <exception cref="MemoryAccessException">Part of the range is unmapped or read-only; nothing changed.</exception>
    /// <exception cref="NotSupportedException">Part of the range is a shared mapping; nothing changed.</exception>
    public int MakeExclusive(ulong address, ulong length)
    {
        var end = AddressRange.Validate(address, length);
        ThrowIfDisposed();
        var held = new List<GrantedPage>();
        var next = address;
        var attempts = 0;
        while (next < end)
        {
            next = FirstNotAtomic(next, end);
            if (next >= end)
            {
                break;
            }

            if (++attempts > 1000)
            {
                break; // an invalidation hit every attempt: report what was granted
            }

            try
            {
                GrantAndMap(next, end, held);
            }
            finally
            {
                ReleaseAll(held);
            }
        }

        return CountExclusive(address, length);
    }

    /// <summary>Pages of the range this device holds with atomic permission.</summary>
    public int CountExclusive(ulong address, ulong length)
    {
        var end = AddressRange.Validate(address, length);
        lock (_lock)
        {
            ThrowIfDisposedLocked();
            var table = _table;
            var count = 0;
            if ((end - address) >> PagePool.PageShift <= (ulong)_slots.Count)
            {
                for (var page = address >> PagePool.PageShift; page < end >> PagePool.PageShift; page++)
                {
                    if (TryGetSlotLocked(page, out var slot) && DevicePte.Permission(Volatile.Read(ref table[slot])) == DevicePte.Atomic)
                    {
                        count++;
                    }
                }

                return count;
            }

            foreach (var (page, slot) in _slots)
            {
                var at = page << PagePool.PageShift;
                if (at >= address && at < end && DevicePte.Permission(Volatile.Read(ref table[slot])) == DevicePte.Atomic)
                {
                    count++;
                }
            }

            return count;
        }
    }

    /// <summary>A device read of <paramref name="destination"/>.Length bytes at <paramref name="address"/>, mirroring the CPU PTEs.</summary>
    public DeviceStatus Read(ulong address, Span<byte> destination) => Access(address, destination, isWrite: false);

    /// <summary>A device write; a read-only mapping gives <see cref="DeviceStatus.PermissionDenied"/>, nothing written.</summary>
    public unsafe DeviceStatus Write(ulong address, ReadOnlySpan<byte> source)
    {
        fixed (byte* pointer = source)
        {
            return Access(address, new Span<byte>(pointer, source.Length), isWrite: true);
        }
    }

    /// <summary>
    /// Runs a batch of atomics on the device. Each op is translated through the device page table; a missing permission
    /// is a device fault, serviced by a grant, and the pending ops are replayed until every op is applied exactly once,
    /// or refused (<see cref="BatchResult.NotMapped"/>, <see cref="BatchResult.PermissionDenied"/>: not retried).
    /// </summary>
    /// <param name="ops">The atomics; 32-bit ops need 4-byte-aligned addresses, 64-bit ops 8-byte-aligned ones.</param>
    /// <param name="oldValues">Empty, or at least as long as <paramref name="ops"/>: the value each op replaced (0 for refused ops).</param>
    /// <exception cref="ArgumentException">A misaligned op, an unknown kind, or <paramref name="oldValues"/> too short; nothing ran.</exception>
    /// <exception cref="ObjectDisposedException">The mirror, its device or its space was disposed, also while the batch ran.</exception>
    public BatchResult Run(ReadOnlySpan<AtomicOp> ops, Span<long> oldValues = default)
    {
        ValidateBatch(ops, oldValues);
        ThrowIfDisposed();
        if (ops.IsEmpty)
        {
            return default;
        }

        var batch = RentBatch(ops.Length);
        try
        {
            return RunBatch(batch, FillBatch(batch, ops), oldValues);
        }
        finally
        {
            ReturnBatch(batch);
        }
    }

    /// <summary>
    /// Runs a filled batch to the end: services <paramref name="notAtomic"/> first, then launches — servicing the faults
    /// the kernel records while it runs — and replays what a launch left pending.
    /// </summary>
    /// <remarks>
    /// Pages granted here are released (their frames unlocked) as soon as they are mapped: what keeps them with the
    /// device for a while is their hold, which a revocation waits out (the quantum), not a lock held for the launch —
    /// so no CPU access waits for a whole launch (docs/architecture.md, "device faults and the quantum").
    /// </remarks>
    private BatchResult RunBatch(DeviceBatch batch, SortedSet<ulong>? notAtomic, Span<long> oldValues)
    {
        long deviceFaults = 0, launches = 0;
        var held = new List<GrantedPage>();
        try
        {
            if (notAtomic is not null)
            {
                // Faults the host can see before the launch (the device PTE is not Atomic now): service them first, so
                // the launch does not spend itself finding them. Counted as device faults; a revocation racing with
                // this is found by the kernel as usual.
                deviceFaults += notAtomic.Count;
                EngineMetrics.DeviceFaults.Add(notAtomic.Count);
                ServiceFaults(batch, notAtomic, held);
            }

            while (true)
            {
                ThrowIfDisposed();
                _device.LaunchBatch(batch, this);
                launches++;
                deviceFaults += batch.FaultCount;
                EngineMetrics.DeviceFaults.Add(batch.FaultCount);
                var faulted = FaultedPages(batch);
                if (faulted.Count == 0)
                {
                    break;
                }

                ServiceFaults(batch, faulted, held);
            }
        }
        finally
        {
            ReleaseAll(held);
            DropHolds(batch);
        }

        EngineMetrics.Replays.Add(launches - 1);
        var result = Collect(batch, oldValues, deviceFaults, launches - 1);
        DeviceLog.BatchDone(_logger, batch.Count, result.Completed, deviceFaults, launches - 1);
        return result;
    }

    private DeviceBatch RentBatch(int count)
    {
        DeviceBatch? batch = null;
        lock (_spareBatches)
        {
            for (var i = _spareBatches.Count - 1; i >= 0; i--)
            {
                if (_spareBatches[i].Capacity >= count)
                {
                    batch = _spareBatches[i];
                    _spareBatches.RemoveAt(i);
                    break;
                }
            }
        }

        batch ??= new DeviceBatch(_device, Math.Max(count, 256));
        batch.Reset(count);
        return batch;
    }

    private void ReturnBatch(DeviceBatch batch)
    {
        lock (_spareBatches)
        {
            if (!Volatile.Read(ref _disposed) && _device.Executor.Failure is null && _spareBatches.Count < MaxSpareBatches && batch.Capacity <= MaxSpareBatchOps)
            {
                _spareBatches.Add(batch);
                return;
            }
        }

        _device.Retire(batch); // a failed device's stuck kernel may still use it
    }

    /// <summary>Stops using the space: the notifier is removed and the device page table freed. Pages stay device-exclusive until the CPU touches them.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _registration.Dispose();
        Space.DetachMirror(this);
        _device.Executor.Quiesce();
        try
        {
            _device.Retire(_table);
            lock (_spareBatches)
            {
                foreach (var batch in _spareBatches)
                {
                    _device.Retire(batch);
                }

                _spareBatches.Clear();
            }
        }
        finally
        {
            _device.Executor.Resume();
        }

        _device.Forget(this);
    }

    /// <summary>The device page table as the kernels see it; read only inside a launch (swaps happen while quiesced).</summary>
    internal SharedView<long> TableShared => _table.Shared();

    internal MemoryBuffer PoolBuffer => _pool;

    /// <summary>Checks DESIGN §3.5 #3 for this mirror: every Atomic device PTE maps a frame whose CPU entry is device-exclusive.</summary>
    internal void CollectViolations(List<string> violations)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            foreach (var (page, slot) in _slots)
            {
                var entry = Volatile.Read(ref _table[slot]);
                if (DevicePte.Permission(entry) != DevicePte.Atomic)
                {
                    continue;
                }

                var address = page << PagePool.PageShift;
                var pte = Space.PeekPte(address);
                if (!Pte.IsDeviceExclusive(pte) || Pte.Frame(pte) != DevicePte.Frame(entry))
                {
                    violations.Add($"device {_device.Name}: atomic device PTE at 0x{address:x} (frame {DevicePte.Frame(entry)}) but the CPU PTE is {Pte.Describe(pte)} (#3)");
                }
            }
        }
    }

    /// <summary>
    /// The invalidation callback (DESIGN §3.2): clear the device PTEs of the range, then wait until no kernel thread is
    /// still reading one of them or applying an atomic through it (their hazard words). The kernel keeps running: ops
    /// on the cleared pages fault and are replayed after a grant; the rest of the batch goes on.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Invalidate(in NotifierRange range)
    {
        if (range.End - range.Start == PagePool.PageSize && (range.Start & AddressRange.PageMask) == 0)
        {
            InvalidatePage(range);
        }
        else
        {
            InvalidateRange(range);
        }
    }

    /// <summary><see cref="Invalidate"/> of anything but one page: the cleared slots are collected, then waited on together.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void InvalidateRange(in NotifierRange range)
    {
        var cleared = t_clearedSlots ??= [];
        cleared.Clear();
        List<Hold>? holds = null;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            if (_holds.Count != 0)
            {
                holds = TakeHoldsLocked(range.Start, range.End);
            }

            if (holds is null)
            {
                ClearLocked(range.Start, range.End, cleared);
            }
        }

        if (holds is not null)
        {
            // Held pages stay with the device for their quantum: wait it out before clearing anything.
            foreach (var hold in holds)
            {
                WaitOutHold(hold);
            }

            lock (_lock)
            {
                if (_disposed)
                {
                    return;
                }

                ClearLocked(range.Start, range.End, cleared);
            }
        }

        if (cleared.Count == 0)
        {
            return; // nothing mapped there: the device cannot be touching it
        }

        _device.WaitForHazards(CollectionsMarshal.AsSpan(cleared));
        DeviceLog.Invalidated(_logger, Space.Id, cleared.Count, range.Event, range.Start, range.End);
        if (cleared.Capacity > 1 << 16)
        {
            t_clearedSlots = null; // do not keep a huge unmap's list alive on this thread
        }
    }

    /// <summary>
    /// <see cref="Invalidate"/> of one page, the shape of every revocation: it needs no list of cleared slots, and so no
    /// thread-local lookup to find one.
    /// </summary>
    private void InvalidatePage(in NotifierRange range)
    {
        int slot;
        Hold hold;
        lock (_lock)
        {
            var page = range.Start >> PagePool.PageShift;
            if (_disposed)
            {
                return;
            }

            if (_holds.Count == 0 || !TryGetSlotLocked(page, out slot) || !_holds.Remove(slot, out hold))
            {
                if (!TryClearLocked(page, out slot))
                {
                    return; // nothing mapped there: the device cannot be touching it
                }

                hold = default;
            }
        }

        if (hold.Batch is not null)
        {
            // A page granted to serve a running batch: the device keeps it for its quantum (docs/architecture.md).
            _device.Executor.HintFaultsComing();
            WaitOutHold(hold);
            lock (_lock)
            {
                if (_disposed || !TryClearLocked(range.Start >> PagePool.PageShift, out slot))
                {
                    return;
                }
            }

            if (range.Event == NotifierEvent.Clear && range.Owner is null && hold.Launch is { Running: true } launch)
            {
                // A CPU access takes the page: once that access is done, give the page straight back if the batch
                // waits for it — the thread that is surely running then is the one that took it.
                AddressSpace.DeferUntilAccessDone(new PageReturn(this, range.Start, launch).Run);
            }
        }

        _device.WaitForHazards(new Span<int>(ref slot));
        if (_hasLogger)
        {
            DeviceLog.Invalidated(_logger, Space.Id, 1, range.Event, range.Start, range.End);
        }
    }

    /// <summary>Removes and returns the holds on the pages of <c>[start, end)</c>, or null when there are none.</summary>
    private List<Hold>? TakeHoldsLocked(ulong start, ulong end)
    {
        List<Hold>? holds = null;
        List<int>? slots = null;
        foreach (var (slot, hold) in _holds)
        {
            var at = _slotPages[slot] << PagePool.PageShift;
            if (at >= start && at < end)
            {
                (holds ??= []).Add(hold);
                (slots ??= []).Add(slot);
            }
        }

        slots?.ForEach(slot => _holds.Remove(slot));
        return holds;
    }

    // Slots an invalidation of a range cleared, reused per thread: an unmap or a protect allocates nothing.
    [ThreadStatic]
    private static List<int>? t_clearedSlots;

    /// <summary>Clears <paramref name="page"/>'s device PTE if it is valid, with a full fence (the host half of the hazard handshake).</summary>
    private bool TryClearLocked(ulong page, out int slot)
    {
        if (TryGetSlotLocked(page, out slot) && DevicePte.Permission(Volatile.Read(ref _table[slot])) != DevicePte.Invalid)
        {
            Interlocked.Exchange(ref _table[slot], DevicePte.Invalid);
            return true;
        }

        return false;
    }

    /// <summary>Clears the valid device PTEs of <c>[start, end)</c>, each with a full fence (the host half of the hazard handshake).</summary>
    private void ClearLocked(ulong start, ulong end, List<int> cleared)
    {
        var table = _table;
        if ((end - start) >> PagePool.PageShift <= (ulong)_slots.Count)
        {
            // A small range: look its pages up rather than walk every slot.
            for (var page = start >> PagePool.PageShift; page < end >> PagePool.PageShift; page++)
            {
                if (TryClearLocked(page, out var slot))
                {
                    cleared.Add(slot);
                }
            }

            return;
        }

        foreach (var (page, slot) in _slots)
        {
            var at = page << PagePool.PageShift;
            if (at >= start && at < end && DevicePte.Permission(Volatile.Read(ref table[slot])) != DevicePte.Invalid)
            {
                Interlocked.Exchange(ref table[slot], DevicePte.Invalid);
                cleared.Add(slot);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryGetSlotLocked(ulong page, out int slot)
    {
        var fastIndex = page - (PageTable.FastBase >> PagePool.PageShift);
        if (fastIndex < (ulong)_fastSlots.Length)
        {
            slot = _fastSlots[fastIndex] - 1;
            return slot >= 0;
        }

        return _slots.TryGetValue(page, out slot);
    }

    /// <summary>The slot of <paramref name="page"/>'s device PTE, creating it (and growing the table) on first use.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int SlotForLocked(ulong page)
    {
        var fastIndex = page - (PageTable.FastBase >> PagePool.PageShift);
        var fastSlots = _fastSlots;
        if (fastIndex < (ulong)fastSlots.Length && fastSlots[(int)fastIndex] != 0)
        {
            return fastSlots[(int)fastIndex] - 1;
        }

        return SlotForLockedSlow(page, fastIndex);
    }

    /// <summary><see cref="SlotForLocked"/> outside the flat index: the dictionary, or a new slot.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private int SlotForLockedSlow(ulong page, ulong fastIndex)
    {
        if (_slots.TryGetValue(page, out var slot))
        {
            return slot;
        }

        if (_slotCount == _table.Length)
        {
            GrowTableLocked();
        }

        slot = _slotCount++;
        if (slot == _slotPages.Length)
        {
            Array.Resize(ref _slotPages, _slotPages.Length * 2);
        }

        _slotPages[slot] = page;
        _slots[page] = slot;
        if (fastIndex < PageTable.FastSpan >> PagePool.PageShift)
        {
            if (fastIndex >= (ulong)_fastSlots.Length)
            {
                Array.Resize(ref _fastSlots, (int)Math.Min(PageTable.FastSpan >> PagePool.PageShift, Math.Max(fastIndex + 1, (ulong)_fastSlots.Length * 2)));
            }

            _fastSlots[fastIndex] = slot + 1;
        }

        return slot;
    }

    private unsafe void GrowTableLocked()
    {
        var grown = _device.AllocateShared<long>(_table.Length * 2);
        // No kernel may read the old table while we copy and swap.
        _device.Executor.Quiesce();
        try
        {
            var old = _table;
            Buffer.MemoryCopy(old.Pointer, grown.Pointer, grown.Length * sizeof(long), old.Length * sizeof(long));
            _table = grown;
            _device.Retire(old);
        }
        finally
        {
            _device.Executor.Resume();
        }
    }

    private ulong FirstNotAtomic(ulong start, ulong end)
    {
        lock (_lock)
        {
            ThrowIfDisposedLocked();
            var table = _table;
            for (var at = start; at < end; at += PagePool.PageSize)
            {
                if (!TryGetSlotLocked(at >> PagePool.PageShift, out var slot) || DevicePte.Permission(Volatile.Read(ref table[slot])) != DevicePte.Atomic)
                {
                    return at;
                }
            }

            return end;
        }
    }

    /// <summary>
    /// Grants <c>[start, end)</c> (as far as the space lets us without waiting while holding locks) and maps the pages
    /// Atomic, unless an invalidation overlapped the grant (then nothing is mapped and the caller retries): the
    /// <c>mmu_interval_read_begin/retry</c> loop of nouveau, with a temporary interval notifier over the range.
    /// </summary>
    private void GrantAndMap(ulong start, ulong end, List<GrantedPage> held) => GrantAndMap([(start, end)], held, batch: null, launch: null, serviced: false);

    /// <summary>
    /// Grants <paramref name="runs"/> and maps what it granted Atomic (see the overload for one range); for a
    /// <paramref name="batch"/>, each page mapped gets a hold of one quantum (and the fault of
    /// <paramref name="launch"/> it serves as its floor). Returns the pages mapped.
    /// </summary>
    private int GrantAndMap(IReadOnlyList<(ulong Start, ulong End)> runs, List<GrantedPage> held, DeviceBatch? batch, LaunchFaults? launch, bool serviced)
    {
        var interval = new GrantInterval(_device);
        using var registration = Space.InsertIntervalNotifier(interval, runs[0].Start, runs[^1].End - runs[0].Start);
        var sequence = interval.ReadBegin();
        var first = held.Count;
        if (runs.Count == 1)
        {
            Space.GrantExclusive(runs[0].Start, runs[0].End, _device, held);
        }
        else
        {
            Space.GrantExclusiveRuns(runs, _device, held);
        }

        lock (_lock)
        {
            ThrowIfDisposedLocked();
            if (interval.ReadRetry(sequence))
            {
                return 0; // the frames stay held until released; the pages are simply not mapped on the device
            }

            for (var i = first; i < held.Count; i++)
            {
                var page = held[i].Address >> PagePool.PageShift;
                var slot = SlotForLocked(page);
                if (batch is not null)
                {
                    // Before the entry: a revocation must never find the page mapped without its hold.
                    AddHoldLocked(slot, page, batch, launch, serviced);
                }

                Volatile.Write(ref _table[slot], DevicePte.Make(held[i].Frame, DevicePte.Atomic));
            }

            return held.Count - first;
        }
    }

    private void ReleaseAll(List<GrantedPage> held)
    {
        foreach (var page in held)
        {
            Space.ReleaseGranted(page);
        }

        if (_device.Executor.Failure is not null)
        {
            // The device failed while these were being granted: they may be device-exclusive with no device PTE (the
            // failure's hand-back did not know them). Give them back now that their frames are unlocked.
            foreach (var page in held)
            {
                Space.RestoreDeviceExclusive(page.Address);
            }
        }

        held.Clear();
    }

    /// <summary>
    /// The device was declared failed: clear every device PTE (a kernel that ever wakes up faults instead of touching
    /// the pages) and restore the CPU PTE of every page this mirror held with atomic permission, as a CPU touch would.
    /// </summary>
    internal void GiveBackAfterFailure()
    {
        var held = new List<ulong>();
        lock (_lock)
        {
            if (_disposed)
            {
                return; // its pages stay device-exclusive until touched; a touch revokes them without waiting
            }

            foreach (var (page, slot) in _slots)
            {
                var entry = Interlocked.Exchange(ref _table[slot], DevicePte.Invalid);
                if (DevicePte.Permission(entry) == DevicePte.Atomic)
                {
                    held.Add(page << PagePool.PageShift);
                }
            }
        }

        foreach (var address in held)
        {
            Space.RestoreDeviceExclusive(address);
        }
    }

    private DeviceStatus Access(ulong address, Span<byte> buffer, bool isWrite)
    {
        if ((ulong)buffer.Length > ulong.MaxValue - address)
        {
            throw new ArgumentException($"{buffer.Length} bytes at 0x{address:x} run past the end of the address space", nameof(address));
        }

        ThrowIfDisposed();
        if (buffer.Length > 0)
        {
            // Every page first, so a refused access has copied nothing (and faulted nothing in).
            var first = address & ~AddressRange.PageMask;
            var last = (address + (ulong)buffer.Length - 1) & ~AddressRange.PageMask;
            if (first != last)
            {
                AddressRange.Validate(first, last - first + PagePool.PageSize);
                var status = Space.ClassifyForDeviceAccess(first, last, isWrite);
                if (status != DeviceStatus.Ok)
                {
                    return status;
                }
            }
        }

        var needed = isWrite ? DevicePte.Write : DevicePte.Read;
        var done = 0;
        while (done < buffer.Length)
        {
            var at = address + (ulong)done;
            var page = at & ~AddressRange.PageMask;
            var chunk = (int)Math.Min((ulong)(buffer.Length - done), PagePool.PageSize - (at - page));
            if (TryCopy(at, buffer.Slice(done, chunk), isWrite, needed))
            {
                done += chunk;
                continue;
            }

            var status = FaultForAccess(page, isWrite);
            if (status != DeviceStatus.Ok)
            {
                return status;
            }
        }

        return DeviceStatus.Ok;
    }

    /// <summary>Copies through an existing device PTE with enough permission, holding the mirror lock so no invalidation can complete meanwhile.</summary>
    private unsafe bool TryCopy(ulong address, Span<byte> chunk, bool isWrite, int needed)
    {
        lock (_lock)
        {
            ThrowIfDisposedLocked();
            if (!TryGetSlotLocked(address >> PagePool.PageShift, out var slot))
            {
                return false;
            }

            var entry = Volatile.Read(ref _table[slot]);
            if (DevicePte.Permission(entry) < needed)
            {
                return false;
            }

            var pointer = Space.Pool.FrameAddress(DevicePte.Frame(entry)) + (address & AddressRange.PageMask);
            var frameBytes = new Span<byte>(pointer, chunk.Length);
            if (isWrite)
            {
                chunk.CopyTo(frameBytes);
            }
            else
            {
                frameBytes.CopyTo(chunk);
            }

            return true;
        }
    }

    /// <summary>Installs a Read or Write device PTE mirroring the CPU PTE (<c>hmm_range_fault</c>), retrying on a racing invalidation.</summary>
    private DeviceStatus FaultForAccess(ulong page, bool isWrite)
    {
        var interval = new GrantInterval(_device);
        using var registration = Space.InsertIntervalNotifier(interval, page, PagePool.PageSize);
        while (true)
        {
            var sequence = interval.ReadBegin();
            var status = Space.FaultForDevice(page, isWrite, out var frame);
            if (status != DeviceStatus.Ok)
            {
                return status;
            }

            lock (_lock)
            {
                ThrowIfDisposedLocked();
                if (interval.ReadRetry(sequence))
                {
                    continue;
                }

                var slot = SlotForLocked(page >> PagePool.PageShift);
                Volatile.Write(ref _table[slot], DevicePte.Make(frame, isWrite ? DevicePte.Write : DevicePte.Read));
                return DeviceStatus.Ok;
            }
        }
    }

    /// <summary>
    /// Checks the whole batch before anything else happens (no batch rented, no slot created — creating one can grow
    /// the device page table, which stops a running kernel): a bad op is refused with nothing touched.
    /// </summary>
    private static void ValidateBatch(ReadOnlySpan<AtomicOp> ops, Span<long> oldValues)
    {
        if (!oldValues.IsEmpty && oldValues.Length < ops.Length)
        {
            throw new ArgumentException($"oldValues has {oldValues.Length} elements but the batch has {ops.Length} ops", nameof(oldValues));
        }

        for (var i = 0; i < ops.Length; i++)
        {
            ValidateOp(ops[i], i);
        }
    }

    /// <summary>Checks one op: a known kind, an aligned address inside the 47-bit space.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ValidateOp(in AtomicOp op, int index)
    {
        // The kinds are 0..Xor (Enum.IsDefined costs more than the atomic); one compare covers both alignment cases.
        var alignmentMask = op.Is64Bit ? 7UL : 3UL;
        if ((uint)op.Kind > (uint)AtomicKind.Xor || (op.Address & alignmentMask) != 0 || op.Address >= PageTable.AddressLimit)
        {
            ThrowInvalidOp(op, index);
        }
    }

    [DoesNotReturn]
    private static void ThrowInvalidOp(in AtomicOp op, int index)
    {
        if ((uint)op.Kind > (uint)AtomicKind.Xor)
        {
            throw new ArgumentException($"op {index}: {(int)op.Kind} is not an AtomicKind", "ops");
        }

        var size = op.Is64Bit ? 8UL : 4UL;
        if ((op.Address & (size - 1)) != 0)
        {
            throw new ArgumentException($"op {index}: a {size * 8}-bit atomic needs a {size}-byte-aligned address; 0x{op.Address:x} is not", "ops");
        }

        throw new ArgumentException($"op {index}: 0x{op.Address:x} is beyond the 47-bit virtual address space", "ops");
    }

    /// <summary>Translates the ops into the batch; returns the pages whose device PTE is not Atomic now, or null if none.</summary>
    private SortedSet<ulong>? FillBatch(DeviceBatch batch, ReadOnlySpan<AtomicOp> ops)
    {
        // In chunks: an invalidation callback (a CPU revocation) needs the mirror lock, and must not wait for the
        // translation of a whole large batch.
        const int Chunk = 4096;
        SortedSet<ulong>? notAtomic = null;
        for (var start = 0; start < ops.Length; start += Chunk)
        {
            FillChunk(batch, ops, start, Math.Min(ops.Length, start + Chunk), ref notAtomic);
        }

        return notAtomic;
    }

    private void FillChunk(DeviceBatch batch, ReadOnlySpan<AtomicOp> ops, int start, int end, ref SortedSet<ulong>? notAtomic)
    {
        lock (_lock)
        {
            ThrowIfDisposedLocked();
            FillChunkLocked(batch, ops, start, end, ref notAtomic);
        }
    }

    // The loop of FillChunk, outside its lock's try/finally: locals live across an exception-handling region stay on
    // the stack, and this loop runs once per op.
    private void FillChunkLocked(DeviceBatch batch, ReadOnlySpan<AtomicOp> ops, int start, int end, ref SortedSet<ulong>? notAtomic)
    {
        var target = batch.Ops.AsSpan(end);
        ulong lastPage = ulong.MaxValue;
        var lastSlot = -1;
        for (var i = start; i < end; i++)
        {
            ref readonly var op = ref ops[i];
            var page = op.Address >> PagePool.PageShift;
            if (page != lastPage)
            {
                // Runs of ops on one page (a contended counter) look their slot up once.
                lastSlot = SlotForLocked(page);
                lastPage = page;
                if (DevicePte.Permission(Volatile.Read(ref _table[lastSlot])) != DevicePte.Atomic)
                {
                    (notAtomic ??= []).Add(page);
                }
            }

            target[i] = new DeviceOp
            {
                Slot = lastSlot,
                Offset = (int)(op.Address & AddressRange.PageMask),
                Code = (int)op.Kind,
                Is64Bit = op.Is64Bit ? 1 : 0,
                Operand = op.Operand,
                Comparand = op.Comparand,
            };
        }
    }

    /// <summary>
    /// The pages of the ops a launch left pending: none when every thread that faulted got its page while the launch
    /// ran; otherwise (a thread stopped waiting, a stop, a lapped fault ring) a scan of the batch finds them.
    /// </summary>
    private SortedSet<ulong> FaultedPages(DeviceBatch batch)
    {
        var pages = new SortedSet<ulong>();
        if (!batch.Stopped && !batch.LeftPending)
        {
            return pages; // every op was applied, or refused while the launch ran
        }

        lock (_lock)
        {
            for (var i = 0; i < batch.Count; i++)
            {
                if (Volatile.Read(ref batch.States[i]) == OpState.Pending)
                {
                    pages.Add(_slotPages[batch.Ops[i].Slot]);
                }
            }

            // Pages mapped Atomic meanwhile need no service: their ops just run on the next launch.
            var table = _table;
            pages.RemoveWhere(page => TryGetSlotLocked(page, out var slot) && DevicePte.Permission(Volatile.Read(ref table[slot])) == DevicePte.Atomic);
            if (pages.Count == 0 && AnyPending(batch))
            {
                pages.Add(ulong.MaxValue); // only stopped ops remain: relaunch without servicing
            }
        }

        return pages;
    }

    private static bool AnyPending(DeviceBatch batch)
    {
        for (var i = 0; i < batch.Count; i++)
        {
            if (Volatile.Read(ref batch.States[i]) == OpState.Pending)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Services device faults between launches: refuses ops on pages that can never be granted, and grants the rest —
    /// every run under one mmap-lock acquisition and one retry check — each with a hold of one quantum.
    /// </summary>
    private void ServiceFaults(DeviceBatch batch, SortedSet<ulong> faulted, List<GrantedPage> held)
    {
        faulted.Remove(ulong.MaxValue);
        Dictionary<ulong, int>? refused = null;
        var runs = new List<(ulong Start, ulong End)>();
        foreach (var page in faulted)
        {
            var address = page << PagePool.PageShift;
            var status = Space.ClassifyForAtomic(address);
            if (status != DeviceStatus.Ok)
            {
                (refused ??= [])[page] = status == DeviceStatus.NotMapped ? OpState.NotMapped : OpState.PermissionDenied;
                continue;
            }

            if (runs.Count > 0 && runs[^1].End == address)
            {
                runs[^1] = (runs[^1].Start, address + PagePool.PageSize);
            }
            else
            {
                runs.Add((address, address + PagePool.PageSize));
            }
        }

        if (runs.Count > 0)
        {
            try
            {
                GrantAndMap(runs, held, batch, launch: null, serviced: false);
            }
            catch (Exception ex) when (ex is MemoryAccessException or NotSupportedException)
            {
                // The mapping changed since we classified the page: the next launch faults again and classifies anew.
            }
            finally
            {
                ReleaseAll(held);
            }
        }

        if (refused is null)
        {
            return;
        }

        lock (_lock)
        {
            for (var i = 0; i < batch.Count; i++)
            {
                if (Volatile.Read(ref batch.States[i]) == OpState.Pending && refused.TryGetValue(_slotPages[batch.Ops[i].Slot], out var state))
                {
                    Volatile.Write(ref batch.States[i], state);
                    batch.Refused++;
                }
            }
        }
    }

    private static BatchResult Collect(DeviceBatch batch, Span<long> oldValues, long deviceFaults, long replays)
    {
        if (batch.Refused == 0)
        {
            // Nothing refused, and the last launch ran every op still pending to its end: every op is Done. The common
            // case needs no pass over the states (a bulk copy of the old values at most).
            AssertAllDone(batch);
            if (!oldValues.IsEmpty)
            {
                batch.OldValues.AsSpan(batch.Count).CopyTo(oldValues);
            }

            return new BatchResult(batch.Count, 0, 0, deviceFaults, replays);
        }

        long completed = 0, notMapped = 0, denied = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            var state = Volatile.Read(ref batch.States[i]);
            switch (state)
            {
                case OpState.Done:
                    completed++;
                    break;
                case OpState.NotMapped:
                    notMapped++;
                    break;
                case OpState.PermissionDenied:
                    denied++;
                    break;
                default:
                    Debug.Fail($"op {i} left in state {state}");
                    break;
            }

            if (!oldValues.IsEmpty)
            {
                oldValues[i] = state == OpState.Done ? batch.OldValues[i] : 0;
            }
        }

        return new BatchResult(completed, notMapped, denied, deviceFaults, replays);
    }

    [Conditional("DEBUG")]
    private static void AssertAllDone(DeviceBatch batch)
    {
        for (var i = 0; i < batch.Count; i++)
        {
            var state = Volatile.Read(ref batch.States[i]);
            Debug.Assert(state == OpState.Done, $"op {i} left in state {state} with no op refused");
        }
    }

    private void ThrowIfDisposed()
    {
        _device.Executor.ThrowIfFailed();
        ObjectDisposedException.ThrowIf(_device.IsDisposed, _device);
        ObjectDisposedException.ThrowIf(Space.IsDisposed, Space);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
    }

    private void ThrowIfDisposedLocked() => ThrowIfDisposed();

    /// <summary>The mirror's notifier over the whole space.</summary>
    internal sealed class MirrorNotifier(DeviceMirror mirror) : MmuIntervalNotifier(engineOwned: true)
    {
        // Our own grant's Exclusive events must not bump our sequence or stop our kernel: that would livelock the grant.
        protected override bool Ignores(in NotifierRange range) =>
            range.Event == NotifierEvent.Exclusive && ReferenceEquals(range.Owner, mirror._device);

        protected override void Invalidate(in NotifierRange range) => mirror.Invalidate(range);
    }

    /// <summary>A temporary notifier over a range being granted or faulted in: only its sequence matters.</summary>
    /// <remarks>
    /// Besides its own Exclusive events it ignores the Clear its own grant fires when it takes a page back from another
    /// device before converting it: that restore precedes the conversion this notifier guards (honouring it would make
    /// every re-grant of a page another device holds retry forever). A real revocation of a page the grant converted
    /// needs the frame lock the grant holds, so it cannot come in between.
    /// </remarks>
    private sealed class GrantInterval(ExclusiveDevice device) : MmuIntervalNotifier(engineOwned: true)
    {
        protected override bool Ignores(in NotifierRange range) =>
            (range.Event is NotifierEvent.Exclusive or NotifierEvent.Clear) && ReferenceEquals(range.Owner, device);

        protected override void Invalidate(in NotifierRange range)
        {
        }
    }
}
