using System.Runtime.InteropServices;
using GpuExclusive.Native;

namespace GpuExclusive.Workloads.Native;

/// <summary>Fresh anonymous Linux memory for the baselines that measure Linux itself (minor faults, <c>mprotect</c>).</summary>
internal static class AnonymousMemory
{
    // MADV_NOHUGEPAGE: keeps a baseline on 4 KiB pages even where transparent huge pages are "always" (with THP one fault
    // would populate 512 pages, and a first touch would not be a per-page minor fault any more).
    private const int MadvNoHugePage = 15;

    /// <summary>Maps <paramref name="bytes"/> of private anonymous read-write memory (nothing populated yet).</summary>
    /// <exception cref="PlatformNotSupportedException">Not Linux: the baseline is Linux itself.</exception>
    internal static nint Map(nuint bytes, bool noHugePages)
    {
        RequireLinux();
        var address = LinuxMemory.Mmap(0, bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous, -1, 0);
        if (address == LinuxMemory.MapFailed)
        {
            throw new InvalidOperationException($"mmap of {bytes} bytes failed, errno {Marshal.GetLastPInvokeError()}");
        }

        if (noHugePages)
        {
            _ = LinuxMemory.Madvise(address, bytes, MadvNoHugePage); // best effort: a kernel without THP refuses it
        }

        return address;
    }

    internal static void Unmap(nint address, nuint bytes) => _ = LinuxMemory.Munmap(address, bytes);

    internal static void RequireLinux()
    {
        if (!LinuxMemory.IsSupported)
        {
            throw new PlatformNotSupportedException("the baseline is Linux itself (mmap, mprotect, minor faults)");
        }
    }
}
