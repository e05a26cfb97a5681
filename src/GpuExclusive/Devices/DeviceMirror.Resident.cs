using System.Diagnostics;
using GpuExclusive.Devices;
using GpuExclusive.Diagnostics;
using GpuExclusive.Kernels;
using GpuExclusive.Paging;

namespace GpuExclusive;

// Device-resident pages (docs/architecture.md, "device-resident pages"): a grant copies the page into the device's
// memory and maps the slot; a revocation, once no kernel thread uses the page, copies it back before the CPU PTE is
// restored — unless the event throws the contents away.
public sealed partial class DeviceMirror
{
    private readonly PagePlacement _placement;

    // Device page-table slot → resident memory slot, for every entry mapped Resident (guarded by _lock). Its count is
    // all an in-place mirror's revocation looks at.
    private readonly Dictionary<int, int> _residentSlots = [];

    /// <summary>Where this mirror's device works on the pages it holds exclusively.</summary>
    public PagePlacement Placement => _placement;

    /// <summary>Pages of this mirror held in device memory now.</summary>
    internal int ResidentCount
    {
        get
        {
            lock (_lock)
            {
                return _residentSlots.Count;
            }
        }
    }

    private bool IsDeviceResident => _placement == PagePlacement.DeviceResident;

    /// <summary>
    /// Makes room in the device's resident memory for a grant of <paramref name="pages"/> pages, before the grant takes
    /// any lock: hands the least recently used resident pages — of any mirror of this device, used before
    /// <paramref name="usedBefore"/> (a <see cref="Stopwatch"/> timestamp; a batch protects the pages it uses) — back
    /// to the CPU, written back to their frames. Best effort: pages that still find no slot are granted in place.
    /// </summary>
    private void MakeRoomForResident(int pages, long usedBefore)
    {
        var memory = _device.ResidentPages;
        var missing = Math.Min(pages, memory.Capacity) - (memory.Capacity - memory.InUse);
        if (missing <= 0)
        {
            return;
        }

        foreach (var (owner, address) in memory.LeastRecentlyUsed(missing, usedBefore))
        {
            // Exactly what a CPU touch does: the owner's invalidation copies the page back and frees its slot.
            ((DeviceMirror)owner).Space.RestoreDeviceExclusive(address);
            memory.CountEviction();
            EngineMetrics.ResidentEvictions.Add(1);
        }
    }

    /// <summary>
    /// The entry to map for <paramref name="address"/> (frame <paramref name="frame"/>, device page-table slot
    /// <paramref name="slot"/>) just granted: an entry already Atomic stays as it is (a running kernel may be applying
    /// atomics through it); otherwise, in a device-resident mirror with a free slot, the page is copied into device
    /// memory and the entry maps that slot; else it maps the frame in place.
    /// </summary>
    /// <remarks>
    /// The copy runs under the mirror lock: a device write through a Read/Write entry this grant leaves in place (our
    /// own Exclusive event does not clear it) must not land in the frame after the copy.
    /// </remarks>
    private unsafe long GrantedEntryLocked(int slot, ulong address, long frame)
    {
        AssertMirrorLockHeld();
        var current = _pageTable.Entry(slot);
        if (DevicePte.Permission(current) == DevicePte.Atomic)
        {
            return current & ~DevicePte.Wanted;
        }

        if (IsDeviceResident && _device.ResidentPages.TryTake(this, address, frame, out var resident))
        {
            _device.ResidentPages.CopyIn(resident, Space.Pool.FrameAddress(frame));
            _residentSlots.Add(slot, resident);
            EngineMetrics.ResidentCopiesIn.Add(1);
            return DevicePte.MakeResident(resident);
        }

        return DevicePte.Make(frame, DevicePte.Atomic);
    }

    /// <summary>The resident slot behind device page-table slot <paramref name="slot"/>, whose entry was just cleared, or -1.</summary>
    private int TakeResidentLocked(int slot)
    {
        AssertMirrorLockHeld();
        return _residentSlots.Count != 0 && _residentSlots.Remove(slot, out var resident) ? resident : -1;
    }

    /// <summary>The resident slots behind the device page-table slots in <paramref name="cleared"/>, whose entries were just cleared, or null.</summary>
    private List<int>? TakeResidentLocked(List<int> cleared)
    {
        AssertMirrorLockHeld();
        if (_residentSlots.Count == 0)
        {
            return null;
        }

        List<int>? resident = null;
        foreach (var slot in cleared)
        {
            if (_residentSlots.Remove(slot, out var taken))
            {
                (resident ??= []).Add(taken);
            }
        }

        return resident;
    }

    /// <summary>
    /// The end of a resident page's revocation, once no kernel thread uses it: copies it back to its frame — unless
    /// <paramref name="range"/> throws the contents away (unmap, discard, teardown) — and frees its slot.
    /// </summary>
    private unsafe void WriteBack(int resident, in NotifierRange range)
    {
        var memory = _device.ResidentPages;
        if (range.DropsContents)
        {
            memory.DropAndRelease(resident);
            EngineMetrics.ResidentDrops.Add(1);
        }
        else
        {
            memory.WriteBackAndRelease(resident, Space.Pool.FrameAddress(memory.FrameOf(resident)));
            EngineMetrics.ResidentWriteBacks.Add(1);
        }
    }

    /// <summary>
    /// Clears every resident entry, copies each page back to its frame and frees its slot (under the mirror lock, so
    /// no revocation can restore a CPU PTE before its page is back): the mirror's disposal, or a failed device's
    /// hand-back. No kernel may be using the pages: the device is quiesced, or failed. The pages' addresses are added to
    /// <paramref name="written"/>, if given.
    /// </summary>
    private unsafe void WriteBackAllLocked(List<ulong>? written = null)
    {
        AssertMirrorLockHeld();
        if (_residentSlots.Count == 0)
        {
            return;
        }

        var memory = _device.ResidentPages;
        foreach (var (slot, resident) in _residentSlots)
        {
            _pageTable.Set(slot, DevicePte.Invalid);
            written?.Add(_pageTable.PageOf(slot) << PagePool.PageShift);
            memory.WriteBackAndRelease(resident, Space.Pool.FrameAddress(memory.FrameOf(resident)));
            EngineMetrics.ResidentWriteBacks.Add(1);
        }

        _residentSlots.Clear();
    }

    /// <summary>Marks the resident page behind <paramref name="entry"/> used now, for the eviction order.</summary>
    private void TouchIfResident(long entry, long now)
    {
        if (DevicePte.IsResident(entry))
        {
            _device.ResidentPages.Touch((int)DevicePte.Frame(entry), now);
        }
    }

    /// <summary>Checks that resident entries and slots agree (invariant 3's resident half; under the mirror lock).</summary>
    private void CollectResidentViolationsLocked(List<string> violations)
    {
        AssertMirrorLockHeld();
        var memory = _device.ResidentPages;
        foreach (var (slot, resident) in _residentSlots)
        {
            var entry = _pageTable.Entry(slot);
            var address = _pageTable.PageOf(slot) << PagePool.PageShift;
            if (!DevicePte.IsResident(entry) || DevicePte.Frame(entry) != resident || !memory.IsHeldBy(resident, this, address))
            {
                violations.Add($"device {_device.Name}: resident slot {resident} of page 0x{address:x} disagrees with the device PTE {entry:x} or its owner (#3)");
            }
        }
    }
}
