using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using GpuExclusive.Devices;
using GpuExclusive.Diagnostics;
using GpuExclusive.Kernels;
using GpuExclusive.Paging;

namespace GpuExclusive;

// Batches (docs/architecture.md, "the batch path"): validate, translate, launch, service faults, replay, collect.
public sealed partial class DeviceMirror
{
    // Batches of finished runs, kept for reuse (guarded by itself).
    private const int MaxSpareBatches = 4;

    // Larger batches are freed after use rather than kept (44 bytes an op: a 4 M-op batch holds ~180 MiB). Up to that,
    // a run reuses a batch instead of mapping and faulting its memory in again, which cost more than the run itself.
    private const int MaxSpareBatchOps = 4 << 20;

    private readonly List<DeviceBatch> _spareBatches = [];

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
                _device.Launcher.LaunchBatch(batch, this);
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
        batch.DeviceOpsStale = true;
        for (var start = 0; start < ops.Length; start += Chunk)
        {
            FillChunk(batch, ops, start, Math.Min(ops.Length, start + Chunk), ref notAtomic);
        }

        return notAtomic;
    }

    private void FillChunk(DeviceBatch batch, ReadOnlySpan<AtomicOp> ops, int start, int end, ref SortedSet<ulong>? notAtomic)
    {
        var next = start;
        while (true)
        {
            lock (_lock)
            {
                ThrowIfDisposedLocked();
                next = FillChunkLocked(batch, ops, next, end, ref notAtomic);
            }

            if (next == end)
            {
                return;
            }

            // The device page table is full: grow it with the mirror lock released (a growth quiesces the device, and
            // a running batch's thread needs this lock to get there), then go on from the op that did not fit.
            GrowPageTable(1);
        }
    }

    // The loop of FillChunk, outside its lock's try/finally: locals live across an exception-handling region stay on
    // the stack, and this loop runs once per op. Returns end, or the first op whose page needs a slot the full device
    // page table has no room for.
    private int FillChunkLocked(DeviceBatch batch, ReadOnlySpan<AtomicOp> ops, int start, int end, ref SortedSet<ulong>? notAtomic)
    {
        AssertMirrorLockHeld();
        var target = batch.Ops.AsSpan(end);
        ulong lastPage = ulong.MaxValue;
        var lastSlot = -1;
        var now = IsDeviceResident ? Stopwatch.GetTimestamp() : 0;
        for (var i = start; i < end; i++)
        {
            ref readonly var op = ref ops[i];
            var page = op.Address >> PagePool.PageShift;
            if (page != lastPage)
            {
                // Runs of ops on one page (a contended counter) look their slot up once.
                if (!_pageTable.TrySlotFor(page, out lastSlot))
                {
                    return i;
                }

                lastPage = page;
                var entry = _pageTable.Entry(lastSlot);
                if (DevicePte.Permission(entry) != DevicePte.Atomic)
                {
                    (notAtomic ??= []).Add(page);
                }
                else if (now != 0)
                {
                    TouchIfResident(entry, now);
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

        return end;
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
                    pages.Add(_pageTable.PageOf(batch.Ops[i].Slot));
                }
            }

            // Pages mapped Atomic meanwhile need no service: their ops just run on the next launch.
            pages.RemoveWhere(page => _pageTable.TryGetSlot(page, out var slot) && DevicePte.Permission(_pageTable.Entry(slot)) == DevicePte.Atomic);
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
            if (status != AccessStatus.Ok)
            {
                (refused ??= [])[page] = status == AccessStatus.NotMapped ? OpState.NotMapped : OpState.PermissionDenied;
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
                if (Volatile.Read(ref batch.States[i]) == OpState.Pending && refused.TryGetValue(_pageTable.PageOf(batch.Ops[i].Slot), out var state))
                {
                    Volatile.Write(ref batch.States[i], state);
                    batch.Refused++;
                }
            }

            // As ServiceLaunchFaults does: a thread of an earlier launch may have marked the page wanted, and a mark
            // left behind makes every later thread that faults on it think its fault is recorded already.
            foreach (var page in refused.Keys)
            {
                _pageTable.Unmark(page);
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
}
