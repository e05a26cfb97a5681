namespace GpuExclusive;

/// <summary>One device atomic at a virtual address of the mirrored address space.</summary>
/// <param name="Address">Virtual address; 4-byte aligned (8-byte for 64-bit ops).</param>
/// <param name="Kind">The operation.</param>
/// <param name="Operand">The value added, stored, and-ed, ….</param>
/// <param name="Comparand">For <see cref="AtomicKind.CompareExchange"/>: the expected value.</param>
/// <param name="Is64Bit">Operate on a 64-bit word instead of a 32-bit one.</param>
public readonly record struct AtomicOp(ulong Address, AtomicKind Kind, long Operand, long Comparand = 0, bool Is64Bit = false);
