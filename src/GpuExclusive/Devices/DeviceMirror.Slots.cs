using GpuExclusive.Kernels;
using GpuExclusive.Paging;

namespace GpuExclusive;

// Device page-table slots, and the table's growth (docs/architecture.md, "lock order"): a growth quiesces the device,
// which waits for the running batch's thread — and that thread takes the mirror lock and page locks to service its
// launch's faults. So a full table is never grown where it is found full, under the mirror lock (and, for a grant,
// with frames locked): the caller lets go of both, grows it here, and tries again.
public sealed partial class DeviceMirror
{
    /// <summary>The pages of <paramref name="held"/> from <paramref name="from"/> on that have no device page-table slot yet.</summary>
    private int CountWithoutSlotLocked(List<GrantedPage> held, int from)
    {
        AssertMirrorLockHeld();
        var count = 0;
        for (var i = from; i < held.Count; i++)
        {
            count += _pageTable.TryGetSlot(held[i].Address >> PagePool.PageShift, out _) ? 0 : 1;
        }

        return count;
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
    /// (an interlocked or); nothing for a page without a slot.
    /// </summary>
    internal void MarkWantedForTest(ulong address)
    {
        lock (_lock)
        {
            if (_pageTable.TryGetSlot(address >> PagePool.PageShift, out var slot))
            {
                _pageTable.MarkWantedForTest(slot);
            }
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
