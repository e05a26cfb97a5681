using GpuExclusive.Kernels;
using GpuExclusive.Paging;

namespace GpuExclusive;

// Plain device reads and writes (hmm_range_fault): they mirror the CPU PTEs and need no exclusivity.
public sealed partial class DeviceMirror
{
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
                if (status != AccessStatus.Ok)
                {
                    return ToDeviceStatus(status);
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
            if (!_pageTable.TryGetSlot(address >> PagePool.PageShift, out var slot))
            {
                return false;
            }

            var entry = _pageTable.Entry(slot);
            if (DevicePte.Permission(entry) < needed)
            {
                return false;
            }

            if (DevicePte.IsResident(entry))
            {
                // The page lives in device memory while the device holds it: read or write it there.
                var slotNumber = (int)DevicePte.Frame(entry);
                var offset = (int)(address & AddressRange.PageMask);
                if (isWrite)
                {
                    _device.ResidentPages.CopyIn(slotNumber, offset, chunk);
                }
                else
                {
                    _device.ResidentPages.CopyOut(slotNumber, offset, chunk);
                }

                return true;
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
            if (status != AccessStatus.Ok)
            {
                return ToDeviceStatus(status);
            }

            lock (_lock)
            {
                ThrowIfDisposedLocked();
                if (interval.ReadRetry(sequence))
                {
                    continue;
                }

                if (_pageTable.TrySlotFor(page >> PagePool.PageShift, out var slot))
                {
                    _pageTable.Set(slot, DevicePte.Make(frame, isWrite ? DevicePte.Write : DevicePte.Read));
                    return DeviceStatus.Ok;
                }
            }

            // The device page table is full: grow it with no lock held (a growth quiesces the device:
            // docs/architecture.md, "lock order"), then fault the page in again.
            GrowPageTable(1);
        }
    }

    /// <summary>The public status of what the address space answered.</summary>
    private static DeviceStatus ToDeviceStatus(AccessStatus status) => status switch
    {
        AccessStatus.Ok => DeviceStatus.Ok,
        AccessStatus.NotMapped => DeviceStatus.NotMapped,
        _ => DeviceStatus.PermissionDenied,
    };
}
