using System.Runtime.InteropServices;

namespace GpuExclusive.Memory;

/// <summary>
/// Metadata of one frame: 24 bytes, so frame metadata plus one PTE stay within the 32 bytes per page of DESIGN §7.
/// </summary>
/// <remarks>
/// <see cref="RefCount"/> and <see cref="MapCount"/> change with <see cref="Interlocked"/> only; <see cref="Flags"/>
/// with <see cref="Interlocked.Or(ref int, int)"/>/<see cref="Interlocked.And(ref int, int)"/>; <see cref="LockWord"/>
/// belongs to <see cref="FrameLock"/>; <see cref="Rmap"/> to <see cref="ReverseMap"/> (under its stripe lock).
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal struct FrameMeta
{
    /// <summary>References: one per mapping (present or device-exclusive PTE), one per shared-memory object slot, plus transient ones. 0 = free.</summary>
    public int RefCount;
    /// <summary>PTEs (present or device-exclusive) that map this frame.</summary>
    public int MapCount;
    /// <summary><see cref="FrameFlags"/>.</summary>
    public int Flags;
    /// <summary>Bit 0: locked. Bits 1..: number of waiters × 2.</summary>
    public int LockWord;
    /// <summary>Reverse map: 0 = no mapping, &gt; 0 = the single mapping inline, <see cref="ReverseMap.Overflowed"/> = several, listed aside.</summary>
    public long Rmap;
}
