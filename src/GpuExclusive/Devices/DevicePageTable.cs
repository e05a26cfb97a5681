using System.Diagnostics;
using System.Runtime.CompilerServices;
using GpuExclusive.Kernels;
using GpuExclusive.Paging;

namespace GpuExclusive.Devices;

/// <summary>
/// One mirror's device page table (docs/architecture.md, "layers"): a slot per page the mirror ever mapped, each holding
/// a <see cref="DevicePte"/> in host-mapped memory the kernels translate through. Slots are never reassigned while the
/// mirror lives (a batch names pages by slot), and the table grows by doubling — a swap made while the device is
/// quiesced, since running kernels read the old one.
/// </summary>
/// <remarks>
/// <para>
/// Not thread-safe: every member runs under the owning mirror's lock (asserted in DEBUG builds), except
/// <see cref="Shared"/>, which a launch reads while the device is not quiesced (a swap quiesces it first), and the
/// kernels' own accesses.
/// </para>
/// <para>
/// The table never grows by itself: <see cref="TrySlotFor"/> says when a new slot does not fit, and the mirror grows
/// it (<see cref="GrowLocked"/>) after quiescing the device with its lock released — a quiesce waits for the running
/// batch's thread, which takes the mirror lock to service its launch's faults (docs/architecture.md, "lock order").
/// </para>
/// </remarks>
internal sealed class DevicePageTable
{
    private const int InitialSlots = 1024;

    private readonly ExclusiveDevice _device;
    private readonly object _lock;

    // Page → slot for every mapped page, and its inverse; _slotCount slots are in use.
    private readonly Dictionary<ulong, int> _slots = [];
    private ulong[] _slotPages = new ulong[InitialSlots];
    private int _slotCount;

    // Slots of pages in the engine's fast range (where mappings go first), indexed by page - FastBase page, as slot + 1
    // (0 = none): a batch resolves most ops without hashing. Grown on demand.
    private int[] _fastSlots = new int[InitialSlots];

    private volatile HostMappedArray<long> _table;

    /// <param name="device">The device whose memory holds the table (and which quiesces for a swap).</param>
    /// <param name="mirrorLock">The owning mirror's lock, which guards this table.</param>
    internal DevicePageTable(ExclusiveDevice device, object mirrorLock)
    {
        _device = device;
        _lock = mirrorLock;
        _table = device.AllocateShared<long>(InitialSlots);
    }

    /// <summary>Slots in use.</summary>
    internal int Count
    {
        get
        {
            AssertLockHeld();
            return _slotCount;
        }
    }

    /// <summary>The table as the kernels see it; read inside a launch (a swap happens only while the device is quiesced).</summary>
    internal SharedView<long> Shared => _table.Shared();

    /// <summary>The table's memory (for the mirror to retire on disposal).</summary>
    internal HostMappedArray<long> Memory => _table;

    /// <summary>The slot of <paramref name="page"/>, if the mirror ever mapped it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryGetSlot(ulong page, out int slot)
    {
        AssertLockHeld();
        var fastIndex = page - (PageTable.FastBase >> PagePool.PageShift);
        if (fastIndex < (ulong)_fastSlots.Length)
        {
            slot = _fastSlots[fastIndex] - 1;
            return slot >= 0;
        }

        return _slots.TryGetValue(page, out slot);
    }

    /// <summary>
    /// The slot of <paramref name="page"/>'s entry, created on first use; false (and no slot) when the page needs a new
    /// slot and the table is full: the caller releases the mirror lock, grows the table and tries again.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TrySlotFor(ulong page, out int slot)
    {
        AssertLockHeld();
        var fastIndex = page - (PageTable.FastBase >> PagePool.PageShift);
        var fastSlots = _fastSlots;
        if (fastIndex < (ulong)fastSlots.Length && fastSlots[(int)fastIndex] != 0)
        {
            slot = fastSlots[(int)fastIndex] - 1;
            return true;
        }

        return TrySlotForSlow(page, fastIndex, out slot);
    }

    /// <summary>The page slot <paramref name="slot"/> maps.</summary>
    internal ulong PageOf(int slot)
    {
        AssertLockHeld();
        return _slotPages[slot];
    }

    /// <summary>The entry of <paramref name="slot"/> now.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal long Entry(int slot) => Volatile.Read(ref _table[slot]);

    /// <summary>The entry of <paramref name="page"/> now, or <see cref="DevicePte.Invalid"/> for a page never mapped.</summary>
    internal long EntryOf(ulong page) => TryGetSlot(page, out var slot) ? Entry(slot) : DevicePte.Invalid;

    /// <summary>Writes <paramref name="slot"/>'s entry (any entry the host writes clears the <see cref="DevicePte.Wanted"/> mark).</summary>
    internal void Set(int slot, long entry)
    {
        AssertLockHeld();
        Volatile.Write(ref _table[slot], entry);
    }

    /// <summary>Test hook: sets the <see cref="DevicePte.Wanted"/> mark of <paramref name="slot"/>'s entry, as a faulting kernel thread does.</summary>
    internal void MarkWantedForTest(int slot)
    {
        AssertLockHeld();
        Interlocked.Or(ref _table[slot], DevicePte.Wanted);
    }

    /// <summary>Clears the <see cref="DevicePte.Wanted"/> mark of <paramref name="page"/>'s entry, leaving its permission.</summary>
    internal void Unmark(ulong page)
    {
        if (TryGetSlot(page, out var slot))
        {
            Interlocked.And(ref _table[slot], ~DevicePte.Wanted);
        }
    }

    /// <summary>Clears <paramref name="page"/>'s entry if it is valid, with a full fence (the host half of the hazard handshake).</summary>
    internal bool TryClear(ulong page, out int slot)
    {
        if (TryGetSlot(page, out slot) && DevicePte.Permission(Entry(slot)) != DevicePte.Invalid)
        {
            Interlocked.Exchange(ref _table[slot], DevicePte.Invalid);
            return true;
        }

        return false;
    }

    /// <summary>Clears the valid entries of <c>[start, end)</c>, each with a full fence, adding their slots to <paramref name="cleared"/>.</summary>
    internal void Clear(ulong start, ulong end, List<int> cleared)
    {
        if ((end - start) >> PagePool.PageShift <= (ulong)_slots.Count)
        {
            // A small range: look its pages up rather than walk every slot.
            for (var page = start >> PagePool.PageShift; page < end >> PagePool.PageShift; page++)
            {
                if (TryClear(page, out var slot))
                {
                    cleared.Add(slot);
                }
            }

            return;
        }

        var table = _table;
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

    /// <summary>Clears every entry, returning the addresses of the pages that were mapped Atomic (a failed device's hand-back).</summary>
    internal List<ulong> ClearAllReturningAtomic()
    {
        AssertLockHeld();
        var atomic = new List<ulong>();
        foreach (var (page, slot) in _slots)
        {
            if (DevicePte.Permission(Interlocked.Exchange(ref _table[slot], DevicePte.Invalid)) == DevicePte.Atomic)
            {
                atomic.Add(page << PagePool.PageShift);
            }
        }

        return atomic;
    }

    /// <summary>Pages of <c>[start, end)</c> mapped Atomic.</summary>
    internal int CountAtomic(ulong start, ulong end)
    {
        AssertLockHeld();
        var count = 0;
        if ((end - start) >> PagePool.PageShift <= (ulong)_slots.Count)
        {
            for (var page = start >> PagePool.PageShift; page < end >> PagePool.PageShift; page++)
            {
                if (DevicePte.Permission(EntryOf(page)) == DevicePte.Atomic)
                {
                    count++;
                }
            }

            return count;
        }

        foreach (var (page, slot) in _slots)
        {
            var at = page << PagePool.PageShift;
            if (at >= start && at < end && DevicePte.Permission(Entry(slot)) == DevicePte.Atomic)
            {
                count++;
            }
        }

        return count;
    }

    /// <summary>Every (page, slot) pair, for a caller holding the mirror lock.</summary>
    public Dictionary<ulong, int>.Enumerator GetEnumerator()
    {
        AssertLockHeld();
        return _slots.GetEnumerator();
    }

    /// <summary>The cross-field rules of the table (DEBUG builds; under the mirror lock).</summary>
    [Conditional("DEBUG")]
    internal void AssertInvariants()
    {
        AssertLockHeld();
        Debug.Assert(_slotCount == _slots.Count, $"{_slotCount} slots in use but {_slots.Count} pages map to one");
        Debug.Assert(_slotCount <= _table.Length, $"{_slotCount} slots in a table of {_table.Length}");
        foreach (var (page, slot) in _slots)
        {
            Debug.Assert(slot >= 0 && slot < _slotCount && _slotPages[slot] == page, $"page 0x{page:x} maps to slot {slot}, which names page 0x{_slotPages[slot]:x}");
            var fastIndex = page - (PageTable.FastBase >> PagePool.PageShift);
            Debug.Assert(fastIndex >= (ulong)_fastSlots.Length || _fastSlots[fastIndex] == slot + 1, $"the fast index of page 0x{page:x} disagrees with its slot {slot}");
        }
    }

    /// <summary>
    /// Grows the table until <paramref name="free"/> more slots fit: a copy and a swap of the memory the kernels read.
    /// The caller quiesced the device first and then took the mirror lock (never the other way round:
    /// docs/architecture.md, "lock order"), so no kernel reads the old table and no slot is taken meanwhile.
    /// </summary>
    internal unsafe void GrowLocked(int free)
    {
        AssertLockHeld();
        Debug.Assert(_device.Executor.IsQuiesced, "the device page table is swapped only while the device is quiesced");
        var length = (long)_table.Length;
        if (length - _slotCount >= free)
        {
            return; // another thread grew it while this one waited for the device
        }

        AssertInvariants(); // once per growth: linear in the slots, constant per slot
        while (length - _slotCount < free)
        {
            length *= 2;
        }

        var grown = _device.AllocateShared<long>(length);
        var old = _table;
        Buffer.MemoryCopy(old.Pointer, grown.Pointer, grown.Length * sizeof(long), old.Length * sizeof(long));
        _table = grown;
        _device.Retire(old);
    }

    /// <summary><see cref="TrySlotFor"/> outside the flat index: the dictionary, or a new slot if one fits.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TrySlotForSlow(ulong page, ulong fastIndex, out int slot)
    {
        if (_slots.TryGetValue(page, out slot))
        {
            return true;
        }

        if (_slotCount == _table.Length)
        {
            slot = -1;
            return false;
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

        return true;
    }

    [Conditional("DEBUG")]
    private void AssertLockHeld() => Debug.Assert(Monitor.IsEntered(_lock), "the device page table is guarded by its mirror's lock");
}
