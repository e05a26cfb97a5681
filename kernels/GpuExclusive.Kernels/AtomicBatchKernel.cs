using ILGPU;

namespace GpuExclusive.Kernels;

/// <summary>
/// The kernels that apply batches of atomics to pool memory through a device page table: <see cref="Apply"/>, one
/// persistent grid-stride launch per batch, and <see cref="Serve"/>, a resident one-group kernel that waits on a
/// doorbell and serves batch after batch without a launch each.
/// </summary>
/// <remarks>
/// Each op is translated through <c>table[op.Slot]</c>; without Atomic permission the op is a device fault: its slot is
/// appended to the fault buffer and the op stays pending for the host to service and replay. Before it reads an entry a
/// thread publishes the slot in its hazard word (<see cref="HazardWord"/>; kept while its ops stay on that page, cleared
/// when it faults or finishes): an invalidation clears the entry and then waits only for hazard words naming that slot,
/// so a revocation never stops the kernel (a Dekker pair — store hazard, fence, load entry against store entry, load
/// hazard — means either the thread sees the cleared entry and faults, or the host sees the hazard and waits). The stop
/// flag is polled (atomically: a plain load may never see the host's store on a GPU) every <see cref="StopPollOps"/>
/// ops, never in the middle of one, and an op's state becomes Done only after its atomic is applied and its old value
/// stored — so a stopped and relaunched batch applies every op exactly once.
/// Atomics only through <see cref="Atomic"/>: the GPU backends map <c>Interlocked.CompareExchange</c>'s arguments in
/// the wrong order.
/// </remarks>
public static class AtomicBatchKernel
{
    /// <summary>log2 of the page size.</summary>
    public const int PageShift = 12;

    /// <summary>One launch per batch; launch with an explicit grid sized to the device.</summary>
    public static void Apply(
        ArrayView<DeviceOp> ops,
        ArrayView<int> states,
        ArrayView<long> oldValues,
        ArrayView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> control,
        ArrayView<int> faults,
        ArrayView<int> hazards)
    {
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        ApplyShare<PublishHazards>(thread, Grid.DimX * Group.DimX, ops.Length, ops, states, oldValues, table, memory32, memory64, control, faults, hazards);
    }

    /// <summary>
    /// <see cref="Apply"/> for ILGPU's CPU accelerator: its atomics are <c>Interlocked</c> operations, full fences, so
    /// the fence after publishing a hazard word is left out. Never compiled for a GPU.
    /// </summary>
    public static void ApplyOnCpuAccelerator(
        ArrayView<DeviceOp> ops,
        ArrayView<int> states,
        ArrayView<long> oldValues,
        ArrayView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> control,
        ArrayView<int> faults,
        ArrayView<int> hazards)
    {
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        ApplyShare<PublishHazardsInterlocked>(thread, Grid.DimX * Group.DimX, ops.Length, ops, states, oldValues, table, memory32, memory64, control, faults, hazards);
    }

    /// <summary>
    /// <see cref="Apply"/> without hazard words: what the same translation and atomics cost when nothing can take a page
    /// back under the kernel. The baseline "device atomics through the engine" is measured against; not safe under
    /// revocation.
    /// </summary>
    public static void ApplyWithoutHazards(
        ArrayView<DeviceOp> ops,
        ArrayView<int> states,
        ArrayView<long> oldValues,
        ArrayView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> control,
        ArrayView<int> faults,
        ArrayView<int> hazards)
    {
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        ApplyShare<NoHazards>(thread, Grid.DimX * Group.DimX, ops.Length, ops, states, oldValues, table, memory32, memory64, control, faults, hazards);
    }

    /// <summary>
    /// The resident kernel: launch with exactly one group. It serves a batch of <c>control[Count]</c> ops each time the
    /// host rings <c>control[Doorbell]</c> with a new number, stores that number in <c>control[Finished]</c> when every
    /// op of the batch was applied or faulted, and returns when the stop flag is raised — or, if
    /// <c>control[IdlePolls]</c> is set, after that many empty polls, closing the doorbell first. It polls without pause
    /// (ILGPU compiles kernels for its CPU accelerator too, so it cannot yield): on the CPU accelerator the poll limit
    /// gives the core back quickly when the host has nothing to send.
    /// </summary>
    public static void Serve(
        ArrayView<DeviceOp> ops,
        ArrayView<int> states,
        ArrayView<long> oldValues,
        ArrayView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> control,
        ArrayView<int> faults,
        ArrayView<int> hazards)
    {
        // The first thread polls and broadcasts its decision: threads that decided on their own could disagree about
        // a stop raised between their reads and leave the others waiting at a barrier.
        ref var round = ref SharedMemory.Allocate<int>();
        var idleLimit = Atomic.Or(ref control[ControlBlock.IdlePolls], 0);
        var served = 0;
        while (true)
        {
            if (Group.IsFirstThread)
            {
                var polls = 0;
                var bell = Atomic.Or(ref control[ControlBlock.Doorbell], 0);
                while (bell == served && Atomic.Or(ref control[ControlBlock.Stop], 0) == 0)
                {
                    if (idleLimit > 0 && ++polls >= idleLimit)
                    {
                        // Close the doorbell unless the host rang meanwhile: the host rings with a compare-exchange
                        // too, so exactly one of the two wins and no batch is ever rung into a kernel that left.
                        var seen = Atomic.CompareExchange(ref control[ControlBlock.Doorbell], served, ControlBlock.Closed);
                        bell = seen == served ? ControlBlock.Closed : seen;
                        break;
                    }

                    bell = Atomic.Or(ref control[ControlBlock.Doorbell], 0);
                }

                round = bell == served || bell == ControlBlock.Closed ? -1 : bell;
            }

            Group.Barrier();
            var current = round;
            if (current < 0)
            {
                return;
            }

            // Acquire: the batch's ops and states are the same host-mapped addresses every time, and a GPU's L1 is not
            // coherent with the host's writes; without this a thread could read the previous batch's Done or op.
            MemoryFence.SystemLevel();

            served = current;
            var count = Atomic.Or(ref control[ControlBlock.Count], 0);
            ApplyShare<PublishHazards>(Group.IdxX, Group.DimX, count, ops, states, oldValues, table, memory32, memory64, control, faults, hazards);

            // Every thread is done with the batch (and has read `round`) before the first thread reports and polls again.
            Group.Barrier();
            if (Group.IsFirstThread)
            {
                MemoryFence.SystemLevel();
                Atomic.Exchange(ref control[ControlBlock.Finished], current);
            }
        }
    }

    /// <summary>Applies ops <paramref name="thread"/>, +<paramref name="stride"/>, … below <paramref name="count"/>.</summary>
    private static void ApplyShare<THazards>(
        int thread,
        int stride,
        long count,
        ArrayView<DeviceOp> ops,
        ArrayView<int> states,
        ArrayView<long> oldValues,
        ArrayView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> control,
        ArrayView<int> faults,
        ArrayView<int> hazards)
        where THazards : struct, IHazardPolicy
    {
        var publish = default(THazards).Publishes;
        var fence = default(THazards).FencesAfterPublish;

        // The slot this thread's hazard word names (-1: none). It stays published across consecutive ops on one page —
        // each op still reads the entry, so a host waiting on the word sees it change within one op once the entry is
        // cleared — and is published anew, with the other flip bit, whenever the page changes: a host waiting for one
        // publication sees the next as a change even if it never saw the zero in between.
        var published = -1;
        var flip = 0;
        var untilPoll = 0;
        for (long i = thread; i < count; i += stride)
        {
            if (--untilPoll <= 0)
            {
                if (Atomic.Or(ref control[ControlBlock.Stop], 0) != 0)
                {
                    break;
                }

                untilPoll = StopPollOps;
            }

            if (states[i] != OpState.Pending)
            {
                continue;
            }

            var op = ops[i];
            if (publish && op.Slot != published)
            {
                flip ^= 1;
                StoreHazard(ref hazards[thread * HazardStride], HazardWord(op.Slot, flip), fence);
                if (fence)
                {
                    MemoryFence.SystemLevel();
                }

                published = op.Slot;
            }

            var entry = Atomic.Or(ref table[op.Slot], 0L);
            if (DevicePte.Permission(entry) != DevicePte.Atomic)
            {
                if (published >= 0)
                {
                    StoreHazard(ref hazards[thread * HazardStride], 0, fence);
                    published = -1;
                }

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

            // No fence per op: the host reads states and old values only after the launch has returned, or after the
            // resident kernel's fenced Finished report, both of which publish everything before them.
            states[i] = OpState.Done;
        }

        if (published >= 0)
        {
            StoreHazard(ref hazards[thread * HazardStride], 0, fence);
        }
    }

    /// <summary>
    /// Changes or clears a thread's hazard word; with <paramref name="fence"/> (a GPU) it fences first, so the atomics
    /// applied under the old word reach memory before a host waiting on the word sees it change, and exchanges.
    /// </summary>
    private static void StoreHazard(ref int word, int value, bool fence)
    {
        if (fence)
        {
            MemoryFence.SystemLevel();
            Atomic.Exchange(ref word, value);
        }
        else
        {
            // A plain store: on the CPU accelerator the next entry read is an Interlocked operation, a full fence that
            // orders this store before it (the Dekker pair needs nothing more), and the atomics applied under the old
            // word were Interlocked too, so they are visible before this store is. An exchange here cost as much as the
            // op it protects.
            word = value;
        }
    }

    /// <summary>
    /// Ints between two threads' hazard words: one 64-byte line each, so that publishing a word never moves a line
    /// another thread is publishing to (on the CPU accelerator that false sharing cost more than the atomics).
    /// </summary>
    public const int HazardStride = 16;

    /// <summary>Ops between two polls of the stop flag: a poll is an atomic on a line every thread shares.</summary>
    public const int StopPollOps = 64;

    /// <summary>The hazard word of a thread working through <paramref name="slot"/> (0 is "none").</summary>
    public static int HazardWord(int slot, int flip) => ((slot + 1) << 1) | flip;

    /// <summary>The slot a non-zero hazard word names.</summary>
    public static int HazardSlot(int word) => (word >> 1) - 1;

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
