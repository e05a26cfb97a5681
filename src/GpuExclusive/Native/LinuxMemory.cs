using System.Runtime.InteropServices;

namespace GpuExclusive.Native;

/// <summary>P/Invoke for the Linux memory calls the pool and the benchmarks need (<c>sys/mman.h</c>).</summary>
internal static unsafe partial class LinuxMemory
{
    /// <summary><c>PROT_NONE</c>.</summary>
    internal const int ProtNone = 0x0;
    /// <summary><c>PROT_READ</c>.</summary>
    internal const int ProtRead = 0x1;
    /// <summary><c>PROT_WRITE</c>.</summary>
    internal const int ProtWrite = 0x2;
    /// <summary><c>MAP_PRIVATE</c>.</summary>
    internal const int MapPrivate = 0x02;
    /// <summary><c>MAP_ANONYMOUS</c>.</summary>
    internal const int MapAnonymous = 0x20;
    /// <summary><c>MAP_FAILED</c>, i.e. <c>(void*)-1</c>.</summary>
    internal static readonly nint MapFailed = -1;
    /// <summary><c>MADV_DONTNEED</c>.</summary>
    internal const int MadvDontNeed = 4;
    /// <summary><c>MADV_HUGEPAGE</c>: back the range with transparent huge pages where the kernel can.</summary>
    internal const int MadvHugePage = 14;

    internal static bool IsSupported => OperatingSystem.IsLinux();

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    internal static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    internal static partial int Munmap(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "mlock", SetLastError = true)]
    internal static partial int Mlock(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "munlock", SetLastError = true)]
    internal static partial int Munlock(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    internal static partial int Mprotect(nint address, nuint length, int protection);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    internal static partial int Madvise(nint address, nuint length, int advice);
}
