using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GpuExclusive.Devices;
using GpuExclusive.Paging;

namespace GpuExclusive;

// Invalidation (docs/architecture.md, "the revocation path"): the mirror's notifier clears device PTEs and waits for
// the kernel threads using them (hazard words) before the CPU PTE changes.
public sealed partial class DeviceMirror
{
    /// <summary>
    /// The invalidation callback (docs/architecture.md, "the revocation path"): clear the device PTEs of the range, then wait until no kernel thread is
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
        List<int>? resident = null;
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
                _pageTable.Clear(range.Start, range.End, cleared);
                resident = TakeResidentLocked(cleared);
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

                _pageTable.Clear(range.Start, range.End, cleared);
                resident = TakeResidentLocked(cleared);
            }
        }

        if (cleared.Count == 0)
        {
            return; // nothing mapped there: the device cannot be touching it
        }

        _device.Hazards.WaitFor(CollectionsMarshal.AsSpan(cleared));
        if (resident is not null)
        {
            foreach (var slot in resident)
            {
                WriteBack(slot, range);
            }
        }

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
        var resident = -1;
        lock (_lock)
        {
            var page = range.Start >> PagePool.PageShift;
            if (_disposed)
            {
                return;
            }

            if (_holds.Count == 0 || !_pageTable.TryGetSlot(page, out slot) || !_holds.Remove(slot, out hold))
            {
                if (!_pageTable.TryClear(page, out slot))
                {
                    return; // nothing mapped there: the device cannot be touching it
                }

                hold = default;
                resident = TakeResidentLocked(slot);
            }
        }

        if (hold.Batch is not null)
        {
            // A page granted to serve a running batch: the device keeps it for its quantum (docs/architecture.md).
            _device.Executor.HintFaultsComing();
            WaitOutHold(hold);
            lock (_lock)
            {
                if (_disposed || !_pageTable.TryClear(range.Start >> PagePool.PageShift, out slot))
                {
                    return;
                }

                resident = TakeResidentLocked(slot);
            }

            if (range.Event == NotifierEvent.Clear && range.Owner is null && hold.Launch is { Running: true } launch)
            {
                // A CPU access takes the page: once that access is done, give the page straight back if the batch
                // waits for it — the thread that is surely running then is the one that took it.
                AddressSpace.DeferUntilAccessDone(new PageReturn(this, range.Start, launch).Run);
            }
        }

        _device.Hazards.WaitFor(new Span<int>(ref slot));
        if (resident >= 0)
        {
            WriteBack(resident, range);
        }

        if (_hasLogger)
        {
            DeviceLog.Invalidated(_logger, Space.Id, 1, range.Event, range.Start, range.End);
        }
    }

    /// <summary>Removes and returns the holds on the pages of <c>[start, end)</c>, or null when there are none.</summary>
    private List<Hold>? TakeHoldsLocked(ulong start, ulong end)
    {
        AssertMirrorLockHeld();
        List<Hold>? holds = null;
        List<int>? slots = null;
        foreach (var (slot, hold) in _holds)
        {
            var at = _pageTable.PageOf(slot) << PagePool.PageShift;
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

    /// <summary>The mirror's notifier over the whole space.</summary>
    /// <summary>The mirror's notifier over the whole space, called directly (see <see cref="DirectIntervalNotifier"/>).</summary>
    private unsafe DirectIntervalNotifier CreateNotifier() => new(this, &IgnoresEvent, &InvalidateEvent);

    // Our own grant's Exclusive events must not bump our sequence or stop our kernel: that would livelock the grant.
    private static bool IgnoresEvent(object mirror, in NotifierRange range) =>
        range.Event == NotifierEvent.Exclusive && ReferenceEquals(range.Owner, Unsafe.As<DeviceMirror>(mirror)._device);

    private static void InvalidateEvent(object mirror, in NotifierRange range) => Unsafe.As<DeviceMirror>(mirror).Invalidate(range);
}
