namespace GpuExclusive.Kernels;

/// <summary>
/// The device page-table entry the kernels translate through (one 64-bit word per mirrored page):
/// <code>
///  63                    52 51                                  12 11          4    3       2    1   0
/// +------------------------+--------------------------------------+--------------+--------+------+-------+
/// |        reserved        |   frame number, or resident slot     |   reserved   |Resident|Wanted| Perm  |
/// +------------------------+--------------------------------------+--------------+--------+------+-------+
/// Perm: 0 Invalid, 1 Read, 2 Write (implies Read), 3 Atomic (implies Write; only through a grant).
/// Wanted: set by a kernel thread that faulted on the page and waits for it (an interlocked or); any entry the host
/// writes clears it. It tells a CPU access that just revoked the page that the running batch wants it back.
/// Resident: the page lives in device memory while the device holds it (docs/architecture.md, "device-resident
/// pages"), and the number field is its slot there, not a pool frame.
/// </code>
/// The host writes entries; kernels only read them, with a system-scope acquire load (<see cref="IHostSharedMemory"/>),
/// so that a GPU sees the host's latest store and the page's contents as the host left them.
/// </summary>
internal static class DevicePte
{
    /// <summary>No device access.</summary>
    public const int Invalid = 0;
    /// <summary>Device reads allowed (mirrors a present CPU PTE).</summary>
    public const int Read = 1;
    /// <summary>Device reads and writes allowed (mirrors a writable CPU PTE).</summary>
    public const int Write = 2;
    /// <summary>Device atomics allowed: the page is device-exclusive to this device.</summary>
    public const int Atomic = 3;

    /// <summary>The Wanted bit: a kernel thread waits for this page to be granted.</summary>
    public const long Wanted = 0b100;

    /// <summary>The Resident bit: the number field is a slot of the device's resident page memory.</summary>
    public const long Resident = 0b1000;

    private const int FrameShift = 12;
    private const long PermissionMask = 0b11;

    /// <summary>An entry granting <paramref name="permission"/> on <paramref name="frame"/>.</summary>
    public static long Make(long frame, int permission) => (frame << FrameShift) | (permission & PermissionMask);

    /// <summary>The permission of an entry.</summary>
    public static int Permission(long entry) => (int)(entry & PermissionMask);

    /// <summary>The frame an entry maps.</summary>
    public static long Frame(long entry) => entry >> FrameShift;

    /// <summary>An Atomic entry for a page held in slot <paramref name="slot"/> of the device's resident page memory.</summary>
    public static long MakeResident(long slot) => Make(slot, Atomic) | Resident;

    /// <summary>True when the entry maps a resident slot rather than a pool frame.</summary>
    public static bool IsResident(long entry) => (entry & Resident) != 0;

    /// <summary>True when a kernel thread waits for this (not Atomic) page.</summary>
    public static bool IsWanted(long entry) => (entry & Wanted) != 0;
}
