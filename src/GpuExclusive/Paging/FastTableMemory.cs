using System.Runtime.InteropServices;
using GpuExclusive.Native;

namespace GpuExclusive.Paging;

/// <summary>
/// The memory of a page table's flat part (<see cref="PageTable.FastPtes"/>): the sequence counts of the fast span's
/// leaves, then its PTEs, one per page, 16 MiB in all. On Linux it is an anonymous <c>MAP_NORESERVE</c> mapping, so
/// only the pages that hold a leaf's PTEs ever get memory (reads of the rest see the shared zero page); elsewhere it is
/// zeroed native memory.
/// </summary>
/// <remarks>
/// Released by the finalizer, not by the space's Dispose: a CPU read racing a Dispose reads through raw pointers into
/// it, and must find zeroed PTEs (and fault into ObjectDisposedException), not unmapped memory.
/// </remarks>
internal sealed unsafe class FastTableMemory : SafeHandle
{
    // MAP_NORESERVE on x86-64 and arm64. Under strict overcommit (vm.overcommit_memory=2) the kernel ignores it and
    // charges the whole reservation to the commit limit.
    private const int MapNoReserve = 0x4000;

    private readonly nuint _bytes;
    private readonly bool _fromMmap;

    internal FastTableMemory(nuint bytes)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        _bytes = bytes;
        if (LinuxMemory.IsSupported)
        {
            var address = LinuxMemory.Mmap(0, bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous | MapNoReserve, -1, 0);
            if (address == LinuxMemory.MapFailed)
            {
                throw new InsufficientMemoryException($"could not reserve {bytes >> 20} MiB for a page table (mmap failed with errno {Marshal.GetLastPInvokeError()})");
            }

            _fromMmap = true;
            SetHandle(address);
        }
        else
        {
            SetHandle((nint)NativeMemory.AllocZeroed(bytes));
        }
    }

    internal long* Base => (long*)handle;

    /// <summary>Returns <paramref name="length"/> bytes from <paramref name="offset"/> (page-aligned) to the OS; they read as zeros.</summary>
    internal void Discard(ulong offset, ulong length)
    {
        if (_fromMmap)
        {
            // Advice, not a promise: if it fails the pages stay, already zero, until the mapping goes.
            _ = LinuxMemory.Madvise(handle + (nint)offset, (nuint)length, LinuxMemory.MadvDontNeed);
        }
        else
        {
            NativeMemory.Clear((byte*)handle + offset, (nuint)length);
        }
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        if (_fromMmap)
        {
            return LinuxMemory.Munmap(handle, _bytes) == 0;
        }

        NativeMemory.Free((void*)handle);
        return true;
    }
}
