using GpuExclusive.Kernels;
using GpuExclusive.Paging;

namespace GpuExclusive;

// Device page-table slots, and the table's growth (docs/architecture.md, "lock order"): a growth quiesces the device,
// which waits for the running batch's thread — and that thread takes the mirror lock and page locks to service its
// launch's faults. So nothing here quiesces with either held: slots are reserved before a grant locks any frame, and
// a full table is grown between two attempts under the mirror lock.
public sealed partial class DeviceMirror
{
    // Pages whose slots are reserved under one acquisition of the mirror lock: a revocation waiting for the lock does
    // not wait for a huge range (as the batch fill's chunks).
    private const int SlotChunk = 4096;

    /// <summary>
    /// Gives every page of <c>[start, end)</c> a device page-table slot, growing the table as needed. Called with no
    /// mirror lock and no frame lock held (a growth quiesces the device); slots are never taken back while the mirror
    /// lives, so the pages still have them when the caller maps them.
    /// </summary>
    private void ReserveSlots(ulong start, ulong end)
    {
        var at = start;
        while (at < end)
        {
            var stop = end - at > SlotChunk * PagePool.PageSize ? at + (SlotChunk * PagePool.PageSize) : end;
            lock (_lock)
            {
                ThrowIfDisposedLocked();
                while (at < stop && _pageTable.TrySlotFor(at >> PagePool.PageShift, out _))
                {
                    at += PagePool.PageSize;
                }
            }

            if (at < stop)
            {
                // The rest of the chunk may need a slot each: make room for them with one quiesce.
                GrowPageTable((int)((stop - at) >> PagePool.PageShift));
            }
        }
    }

    /// <summary>The slot of <paramref name="page"/>, which the caller reserved (<see cref="ReserveSlots"/>) or a batch's fill created.</summary>
    private int ReservedSlotLocked(ulong page)
    {
        AssertMirrorLockHeld();
        if (!_pageTable.TryGetSlot(page, out var slot))
        {
            throw new InvalidOperationException($"page 0x{page << PagePool.PageShift:x} has no device page-table slot: it was mapped without one being reserved");
        }

        return slot;
    }

    /// <summary>Test hook: the device PTE of the page at <paramref name="address"/> now (<see cref="DevicePte.Invalid"/> if it has no slot).</summary>
    internal long DeviceEntryForTest(ulong address)
    {
        lock (_lock)
        {
            return _pageTable.EntryOf(address >> PagePool.PageShift);
        }
    }

    /// <summary>
    /// Test hook: marks the page's device PTE <see cref="DevicePte.Wanted"/>, as a kernel thread that faulted on it does
    /// (an interlocked or); the page must have a slot.
    /// </summary>
    internal void MarkWantedForTest(ulong address)
    {
        lock (_lock)
        {
            _pageTable.MarkWantedForTest(ReservedSlotLocked(address >> PagePool.PageShift));
        }
    }

    /// <summary>
    /// Grows the device page table so that <paramref name="free"/> more slots fit: quiesces the device (no kernel may
    /// read the table being replaced), and only then takes the mirror lock — the order a mirror's disposal uses too.
    /// Never called with the mirror lock or a frame lock held, nor from the thread of a running batch.
    /// </summary>
    private void GrowPageTable(int free)
    {
        System.Diagnostics.Debug.Assert(!Monitor.IsEntered(_lock), "a quiesce under the mirror lock waits for a batch thread that needs it (docs/architecture.md, \"lock order\")");
        _device.Executor.Quiesce();
        try
        {
            lock (_lock)
            {
                ThrowIfDisposedLocked();
                _pageTable.GrowLocked(free);
            }
        }
        finally
        {
            _device.Executor.Resume();
        }
    }
}
