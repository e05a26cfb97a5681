using GpuExclusive.Devices;
using GpuExclusive.Kernels;
using GpuExclusive.Paging;

namespace GpuExclusive;

// Grants (docs/architecture.md, "the grant path"): make_device_exclusive, mapped Atomic under an
// interval notifier's read_begin/retry, and the hand-back of a failed device's pages.
public sealed partial class DeviceMirror
{
    /// <summary>
    /// Makes every page of the range device-exclusive to this device with atomic permission (docs/architecture.md, "the grant path"), waiting for
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

            var slotsNeeded = 0;
            try
            {
                slotsNeeded = GrantAndMap(next, end, held);
            }
            finally
            {
                ReleaseAll(held);
            }

            if (slotsNeeded > 0)
            {
                // The device page table was full: grow it now that no frame is locked and no lock held (a growth
                // quiesces the device, and a running batch's thread may need those: docs/architecture.md, "lock
                // order"), then grant what is left.
                GrowPageTable(slotsNeeded);
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
            return _pageTable.CountAtomic(address, end);
        }
    }

    private ulong FirstNotAtomic(ulong start, ulong end)
    {
        lock (_lock)
        {
            ThrowIfDisposedLocked();
            for (var at = start; at < end; at += PagePool.PageSize)
            {
                if (!_pageTable.TryGetSlot(at >> PagePool.PageShift, out var slot) || DevicePte.Permission(_pageTable.Entry(slot)) != DevicePte.Atomic)
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
    /// <c>mmu_interval_read_begin/retry</c> loop of nouveau, with a temporary interval notifier over the range. Returns
    /// the slots the full device page table lacked for pages it granted but could not map (0 normally): the caller grows
    /// the table once it has released the frames, and retries.
    /// </summary>
    private int GrantAndMap(ulong start, ulong end, List<GrantedPage> held)
    {
        GrantAndMap([(start, end)], held, batch: null, launch: null, serviced: false, out var slotsNeeded);
        return slotsNeeded;
    }

    /// <summary>
    /// Grants <paramref name="runs"/> for <paramref name="batch"/> and maps what it granted Atomic, each page with a hold
    /// of one quantum (and the fault of <paramref name="launch"/> it serves as its floor). Returns the pages mapped.
    /// </summary>
    private int GrantAndMap(IReadOnlyList<(ulong Start, ulong End)> runs, List<GrantedPage> held, DeviceBatch batch, LaunchFaults? launch, bool serviced)
    {
        var mapped = GrantAndMap(runs, held, batch, launch, serviced, out var slotsNeeded);
        System.Diagnostics.Debug.Assert(slotsNeeded == 0, "a batch's pages got their slots when it was filled");
        return mapped;
    }

    /// <summary>
    /// Grants <paramref name="runs"/> and maps what it granted Atomic; for a <paramref name="batch"/>, each page mapped
    /// gets a hold. Returns the pages mapped; <paramref name="slotsNeeded"/> counts the granted pages left unmapped
    /// because the device page table was full — it grows only with no lock held (docs/architecture.md, "lock order"),
    /// so they stay granted on the CPU side only, as after a retry. A batch's pages always have their slots.
    /// </summary>
    private int GrantAndMap(IReadOnlyList<(ulong Start, ulong End)> runs, List<GrantedPage> held, DeviceBatch? batch, LaunchFaults? launch, bool serviced, out int slotsNeeded)
    {
        slotsNeeded = 0;
        if (IsDeviceResident)
        {
            long pages = 0;
            foreach (var (start, end) in runs)
            {
                pages += (long)((end - start) >> PagePool.PageShift);
            }

            MakeRoomForResident((int)Math.Min(pages, int.MaxValue), batch?.StartedAt ?? long.MaxValue);
        }

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

            if (batch is not null && !AcceptsHoldsLocked(batch, launch))
            {
                // The run (or launch) this grant serves is over: a hold now would outlive it, and nobody waits for the
                // page. Map nothing, as after a retry: the CPU's next touch takes the page back with no device to wait for.
                return 0;
            }

            for (var i = first; i < held.Count; i++)
            {
                var page = held[i].Address >> PagePool.PageShift;
                if (!_pageTable.TrySlotFor(page, out var slot))
                {
                    slotsNeeded = CountWithoutSlotLocked(held, i);
                    return i - first;
                }

                if (batch is not null)
                {
                    // Before the entry: a revocation must never find the page mapped without its hold.
                    AddHoldLocked(slot, page, batch, launch, serviced);
                }

                _pageTable.Set(slot, GrantedEntryLocked(slot, held[i].Address, held[i].Frame));
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

            // Resident pages first, while their entries still name their slots; their restores below find nothing to copy.
            WriteBackAllLocked(held);
            held.AddRange(_pageTable.ClearAllReturningAtomic());
        }

        foreach (var address in held)
        {
            Space.RestoreDeviceExclusive(address);
        }
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
