using GpuExclusive.Devices;
using GpuExclusive.Kernels;

namespace GpuExclusive;

// Prepared batches: ops validated and translated once, run many times without the per-run copy and translation.
public sealed partial class DeviceMirror
{
    /// <summary>
    /// Validates <paramref name="ops"/> and translates them once into a <see cref="PreparedBatch"/> kept in
    /// device-visible memory, for <see cref="Run(PreparedBatch, Span{long})"/> to run again and again. Nothing runs yet,
    /// and no page is granted: each run grants what it needs, as <see cref="Run(ReadOnlySpan{AtomicOp}, Span{long})"/> does.
    /// </summary>
    /// <exception cref="ArgumentException">No ops, or an op is misaligned, of an unknown kind or beyond the 47-bit space; nothing was created.</exception>
    /// <exception cref="ObjectDisposedException">The mirror, its device or its space was disposed.</exception>
    public PreparedBatch Prepare(ReadOnlySpan<AtomicOp> ops)
    {
        if (ops.IsEmpty)
        {
            throw new ArgumentException("a prepared batch needs at least one op", nameof(ops));
        }

        ValidateBatch(ops, default);
        ThrowIfDisposed();
        var batch = new DeviceBatch(_device, ops.Length);
        try
        {
            batch.Reset(ops.Length);
            FillBatch(batch, ops);
            var (pages, slots) = DistinctPages(batch);
            return new PreparedBatch(this, batch, pages, slots);
        }
        catch
        {
            batch.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs a batch <see cref="Prepare">prepared</see> for this mirror: the same semantics as
    /// <see cref="Run(ReadOnlySpan{AtomicOp}, Span{long})"/> on its ops — device faults granted, revoked pages replayed,
    /// every op applied exactly once per run — without translating the ops again, or copying them (batches small enough
    /// for the resident kernel are still copied into its staging arrays).
    /// </summary>
    /// <param name="batch">A batch from this mirror's <see cref="Prepare"/>.</param>
    /// <param name="oldValues">Empty, or at least <see cref="PreparedBatch.Count"/> long: the value each op replaced (0 for refused ops).</param>
    /// <exception cref="ArgumentNullException"><paramref name="batch"/> is null.</exception>
    /// <exception cref="ArgumentException">The batch was prepared for another mirror, or <paramref name="oldValues"/> is too short; nothing ran.</exception>
    /// <exception cref="InvalidOperationException">The batch is running already (on another thread, or this call comes from a notifier callback inside its run); nothing ran.</exception>
    /// <exception cref="ObjectDisposedException">The batch, the mirror, its device or its space was disposed.</exception>
    public BatchResult Run(PreparedBatch batch, Span<long> oldValues = default)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (!ReferenceEquals(batch.Mirror, this))
        {
            throw new ArgumentException("the batch was prepared for another mirror; prepare it with this mirror's Prepare", nameof(batch));
        }

        if (!oldValues.IsEmpty && oldValues.Length < batch.Count)
        {
            throw new ArgumentException($"oldValues has {oldValues.Length} elements but the batch has {batch.Count} ops", nameof(oldValues));
        }

        ThrowIfDisposed();
        if (!batch.TryEnterRun())
        {
            throw new InvalidOperationException("the prepared batch is already running (on another thread, or this is a notifier callback inside its run); a prepared batch runs once at a time");
        }

        try
        {
            var device = batch.Batch;
            device.Reset(batch.Count);
            return RunBatch(device, NotAtomicPages(batch), oldValues);
        }
        finally
        {
            batch.ExitRun();
        }
    }

    /// <summary>The distinct slots a filled batch's ops use, with their pages (slots are never reassigned while the mirror lives).</summary>
    private (ulong[] Pages, int[] Slots) DistinctPages(DeviceBatch batch)
    {
        var slots = new HashSet<int>();
        var lastSlot = -1;
        for (var i = 0; i < batch.Count; i++)
        {
            var slot = batch.Ops[i].Slot;
            if (slot != lastSlot)
            {
                slots.Add(slot);
                lastSlot = slot;
            }
        }

        var distinct = slots.ToArray();
        var pages = new ulong[distinct.Length];
        lock (_lock)
        {
            ThrowIfDisposedLocked();
            for (var i = 0; i < distinct.Length; i++)
            {
                pages[i] = _pageTable.PageOf(distinct[i]);
            }
        }

        return (pages, distinct);
    }

    /// <summary>A prepared batch's pages whose device PTE is not Atomic now (granted before the first launch), or null.</summary>
    private SortedSet<ulong>? NotAtomicPages(PreparedBatch batch)
    {
        SortedSet<ulong>? notAtomic = null;
        var now = IsDeviceResident ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        lock (_lock)
        {
            ThrowIfDisposedLocked();
            for (var i = 0; i < batch.Slots.Length; i++)
            {
                var entry = _pageTable.Entry(batch.Slots[i]);
                if (DevicePte.Permission(entry) != DevicePte.Atomic)
                {
                    (notAtomic ??= []).Add(batch.Pages[i]);
                }
                else if (now != 0)
                {
                    TouchIfResident(entry, now);
                }
            }
        }

        return notAtomic;
    }
}
