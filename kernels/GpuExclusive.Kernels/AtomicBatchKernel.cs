using ILGPU;

namespace GpuExclusive.Kernels;

/// <summary>
/// The persistent grid-stride kernel that applies a batch of atomics to pool memory through a device page table.
/// </summary>
/// <remarks>
/// Each op is translated through <c>table[op.Slot]</c>; without Atomic permission the op is a device fault: its slot is
/// appended to the fault buffer and the op stays pending for the host to service and replay. The stop flag is polled
/// (atomically: a plain load may never see the host's store on a GPU) before each op, never in the middle of one, and
/// an op's state becomes Done only after its atomic is applied and its old value stored — so a kernel stopped by a
/// revocation and relaunched applies every op exactly once. Atomics only through <see cref="Atomic"/>: the GPU backends
/// map <c>Interlocked.CompareExchange</c>'s arguments in the wrong order.
/// </remarks>
public static class AtomicBatchKernel
{
    /// <summary>log2 of the page size.</summary>
    public const int PageShift = 12;

    /// <summary>The kernel entry point; launch with an explicit grid sized to the device.</summary>
    public static void Apply(
        ArrayView<DeviceOp> ops,
        ArrayView<int> states,
        ArrayView<long> oldValues,
        ArrayView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> control,
        ArrayView<int> faults)
    {
        long stride = Grid.DimX * Group.DimX;
        for (long i = Grid.IdxX * Group.DimX + Group.IdxX; i < ops.Length; i += stride)
        {
            if (Atomic.Or(ref control[ControlBlock.Stop], 0) != 0)
            {
                return;
            }

            if (states[i] != OpState.Pending)
            {
                continue;
            }

            var op = ops[i];
            var entry = Atomic.Or(ref table[op.Slot], 0L);
            if (DevicePte.Permission(entry) != DevicePte.Atomic)
            {
                var at = Atomic.Add(ref control[ControlBlock.FaultCount], 1);
                if (at < faults.Length)
                {
                    faults[at] = op.Slot;
                }

                continue;
            }

            var byteOffset = (DevicePte.Frame(entry) << PageShift) + op.Offset;
            oldValues[i] = op.Is64Bit != 0
                ? Apply64(ref memory64[byteOffset >> 3], op.Code, op.Operand, op.Comparand)
                : Apply32(ref memory32[byteOffset >> 2], op.Code, (int)op.Operand, (int)op.Comparand);
            MemoryFence.SystemLevel();
            states[i] = OpState.Done;
        }
    }

    /// <summary>Applies one 32-bit atomic and returns the old value, sign-extended.</summary>
    public static long Apply32(ref int target, int code, int operand, int comparand) => code switch
    {
        OpCode.Add => Atomic.Add(ref target, operand),
        OpCode.Exchange => Atomic.Exchange(ref target, operand),
        OpCode.CompareExchange => Atomic.CompareExchange(ref target, comparand, operand),
        OpCode.Min => Atomic.Min(ref target, operand),
        OpCode.Max => Atomic.Max(ref target, operand),
        OpCode.And => Atomic.And(ref target, operand),
        OpCode.Or => Atomic.Or(ref target, operand),
        _ => Atomic.Xor(ref target, operand),
    };

    /// <summary>Applies one 64-bit atomic and returns the old value.</summary>
    public static long Apply64(ref long target, int code, long operand, long comparand) => code switch
    {
        OpCode.Add => Atomic.Add(ref target, operand),
        OpCode.Exchange => Atomic.Exchange(ref target, operand),
        OpCode.CompareExchange => Atomic.CompareExchange(ref target, comparand, operand),
        OpCode.Min => Atomic.Min(ref target, operand),
        OpCode.Max => Atomic.Max(ref target, operand),
        OpCode.And => Atomic.And(ref target, operand),
        OpCode.Or => Atomic.Or(ref target, operand),
        _ => Atomic.Xor(ref target, operand),
    };
}
