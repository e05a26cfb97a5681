using System.Runtime.CompilerServices;

namespace GpuExclusive.Paging;

/// <summary>
/// The 64-bit page-table entry. Layout:
/// <code>
///  63            52 51                                          12 11      8   7      6      5       4      3      2      1  0
/// +----------------+---------------------------------------------+----------+------+------+-------+------+------+------+-----+
/// |    reserved    |            frame number (40 bits)           | reserved | Prot | Uffd | Soft  | Young| Dirty| Write| Kind|
/// |                |                                             |          | None |  Wp  | Dirty |      |      |      |     |
/// +----------------+---------------------------------------------+----------+------+------+-------+------+------+------+-----+
/// Kind: 00 None (the whole word is 0), 01 Present, 10 DeviceExclusive (non-present; only SoftDirty/UffdWp and
/// the frame are meaningful).
/// </code>
/// Present entries are changed with compare-and-swap: CPU accesses set Young and Dirty|SoftDirty without the
/// leaf lock (like a hardware MMU setting A/D bits), everyone else changes an entry under the leaf lock.
/// </summary>
internal static class Pte
{
    internal const long None = 0;

    private const long KindMask = 0b11;
    private const long KindPresent = 0b01;
    private const long KindDeviceExclusive = 0b10;

    internal const long Write = 1L << 2;
    internal const long Dirty = 1L << 3;
    internal const long Young = 1L << 4;
    internal const long SoftDirty = 1L << 5;
    internal const long UffdWp = 1L << 6;
    /// <summary>Present but inaccessible: the mapping is <see cref="Protection.None"/> (x86 <c>_PAGE_PROTNONE</c>).</summary>
    internal const long ProtNone = 1L << 7;

    private const int FrameShift = 12;
    // Everything above the 12 flag bits is the frame (frames stay far below 2^40): a mask that fits a sign-extended
    // 32-bit immediate, so the CPU read path turns a PTE into a frame offset with one AND.
    private const long FrameMask = ~((1L << FrameShift) - 1);

    /// <summary>A present entry for <paramref name="frame"/> with the given flag bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long MakePresent(long frame, long flags) => KindPresent | (frame << FrameShift) | (flags & ~KindMask & ~FrameMask);

    /// <summary>A device-exclusive entry: only the frame and the SoftDirty/UffdWp bits survive the conversion.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long MakeDeviceExclusive(long frame, bool softDirty, bool uffdWp) =>
        KindDeviceExclusive | (frame << FrameShift) | (softDirty ? SoftDirty : 0) | (uffdWp ? UffdWp : 0);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool IsNone(long pte) => pte == None;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool IsPresent(long pte) => (pte & KindMask) == KindPresent;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool IsDeviceExclusive(long pte) => (pte & KindMask) == KindDeviceExclusive;

    /// <summary>Present and accessible for reads.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool IsReadable(long pte) => (pte & (KindMask | ProtNone)) == KindPresent;

    /// <summary>Present, accessible and writable.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool IsWritable(long pte) => (pte & (KindMask | ProtNone | Write)) == (KindPresent | Write);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long Frame(long pte) => (pte & FrameMask) >>> FrameShift;

    /// <summary>The frame's byte offset in its pool: <c>Frame(pte) * PageSize</c>, without the shifts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long FrameOffset(long pte) => pte & FrameMask;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool Has(long pte, long bit) => (pte & bit) != 0;

    internal static string Describe(long pte) => pte switch
    {
        None => "none",
        _ when IsPresent(pte) => $"present(frame={Frame(pte)}{(Has(pte, Write) ? ",W" : "")}{(Has(pte, Dirty) ? ",D" : "")}{(Has(pte, Young) ? ",Y" : "")}{(Has(pte, SoftDirty) ? ",SD" : "")}{(Has(pte, UffdWp) ? ",UW" : "")}{(Has(pte, ProtNone) ? ",PN" : "")})",
        _ when IsDeviceExclusive(pte) => $"device-exclusive(frame={Frame(pte)}{(Has(pte, SoftDirty) ? ",SD" : "")}{(Has(pte, UffdWp) ? ",UW" : "")})",
        _ => $"invalid(0x{pte:x})",
    };
}
