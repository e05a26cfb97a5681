using System.Runtime.InteropServices;

namespace GpuExclusive.Memory;

/// <summary>
/// Metadata of one frame: 20 bytes, so frame metadata plus one 8-byte PTE stay within the 32-byte-per-page budget
/// (docs/benchmarks.md, "metadata per page"; the free list costs nothing: it is threaded through the free frames' own memory).
/// </summary>
/// <remarks>
/// <see cref="RefCount"/> and <see cref="MapCount"/> change with <see cref="Interlocked"/> only. <see cref="State"/>
/// packs the page lock, its parked waiters (both owned by <see cref="FrameLock"/>) and the <see cref="FrameFlags"/>
/// (changed with <see cref="Interlocked.Or(ref int, int)"/>/<see cref="Interlocked.And(ref int, int)"/>, never
/// touching the lock's bits):
/// <code>
///  31      28 27       24   23      22          21        20  19                                 1     0
/// +----------+-----------+---------+-------+---------------+------+-------------------------------+--------+
/// | reserved | reserved  | Mlocked | Dirty | AnonExclusive | Anon | parked waiters (FrameLock)    | locked |
/// +----------+-----------+---------+-------+---------------+------+-------------------------------+--------+
/// </code>
/// <see cref="Rmap"/> belongs to <see cref="ReverseMap"/> (under its stripe lock).
/// </remarks>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
internal struct FrameMeta
{
    /// <summary>References: one per mapping (present or device-exclusive PTE), one per shared-memory object slot, plus transient ones. 0 = free.</summary>
    public int RefCount;
    /// <summary>PTEs (present or device-exclusive) that map this frame.</summary>
    public int MapCount;
    /// <summary>Page lock, its waiters, and the <see cref="FrameFlags"/>.</summary>
    public int State;
    /// <summary>Reverse map: 0 = no mapping, &gt; 0 = the single mapping inline, <see cref="ReverseMap.Overflowed"/> = several, listed aside.</summary>
    public long Rmap;
}
