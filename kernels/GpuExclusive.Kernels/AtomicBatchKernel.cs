using ILGPU;

namespace GpuExclusive.Kernels;

/// <summary>
/// The kernels that apply batches of atomics to pool memory through a device page table: <see cref="Apply"/>, one
/// persistent grid-stride launch per batch, and <see cref="Serve"/>, a resident one-group kernel that waits on a
/// doorbell and serves batch after batch without a launch each. Each comes twice: for a GPU, every word shared with the
/// host accessed at system scope (<see cref="SystemScope"/>), and for ILGPU's CPU accelerator (<see cref="CpuAcceleratorScope"/>).
/// </summary>
/// <remarks>
/// <para>
/// Each op is translated through <c>table[op.Slot]</c>; without Atomic permission the op is a device fault: its slot is
/// appended to the fault buffer and the op stays pending for the host to service and replay. The stop word is polled
/// every <see cref="StopPollOps"/> ops, never in the middle of one, and an op's state becomes Done only after its atomic
/// is applied and its old value stored — so a stopped and relaunched batch applies every op exactly once. Each poll also
/// bumps the thread's heartbeat, which is how the host tells a long batch from a device that stopped answering.
/// </para>
/// <para>
/// <b>Hazard words</b> (docs/architecture.md, "the hazard protocol"). Before a thread reads an entry it publishes the
/// slot in its hazard word (<see cref="HazardWord"/>; kept while its ops stay on that page, cleared when it faults,
/// skips an op that is no longer pending, or finishes). A revocation clears the entry and then waits only for hazard words naming that slot, so it never stops
/// the kernel. In the PTX memory model the pair is a store-buffering (Dekker) litmus test, all four accesses morally
/// strong at system scope:
/// <code>
///   kernel thread                          host (invalidation callback)
///   st.release.sys  hazard = slot          lock xchg  entry = Invalid     (x86 locked op: SC fence, system scope)
///   fence.sc.sys                           mov        h = hazard
///   ld.acquire.sys  e = entry
/// </code>
/// <c>fence.sc.sys</c> and the locked exchange are both sequentially consistent at system scope, so the outcome
/// "the thread read a valid entry and the host read a hazard word without the slot" is forbidden: either the thread
/// sees the cleared entry and faults, or the host sees the hazard and waits for the word to change.
/// </para>
/// <para>
/// <b>Data atomics stay GPU-scoped</b> (ILGPU's <see cref="Atomic"/>, <c>atom.global</c> without <c>.sys</c>): while a
/// device holds a page no CPU access can happen (the CPU PTE is a device-exclusive entry, and a CPU touch first
/// revokes), so they race with nothing on the host, and a system-scope atomic per op would only add cost on the path
/// the engine exists for. What the host needs is that everything a thread did on a page is in host memory before the
/// CPU PTE is restored. That is the release in the hazard protocol: a thread changes or clears its hazard word with
/// <c>st.release.sys</c>, which orders every earlier access of the thread — its GPU-scope atomics on the page included —
/// before the store; the host observes the new word with an acquire load (x86: every load) before it restores the CPU
/// PTE, so by causality order the atomics are visible to it. In the other direction the thread's
/// <c>ld.acquire.sys</c> of an Atomic entry orders the host's writes to the page (made before it granted the page and
/// stored the entry) before the thread's atomics. An op in flight when the entry is cleared either read the entry
/// before the clear — its thread's hazard names the slot, and the host waits until the atomic is applied and released —
/// or reads it cleared and faults, to be replayed after the next grant.
/// </para>
/// <para>
/// The batch (ops, states, old values, faults) and the control block are published the same way: the host writes them
/// before a launch (a launch is a full synchronisation) or before its acquire-release ring of the resident kernel's
/// doorbell; the kernel's results reach the host when the launch returns, or through the resident kernel's fenced
/// release of <c>Finished</c>.
/// </para>
/// <para>
/// The entry points repeat one parameter list on purpose: ILGPU compiles each kernel from a method with explicit
/// parameters, and the PTX tests (<c>tests/GpuExclusive.Tests/Kernels</c>) find the shared buffers by those parameters'
/// names.
/// </para>
/// </remarks>
internal static partial class AtomicBatchKernel
{
    /// <summary>log2 of the page size.</summary>
    public const int PageShift = 12;

    /// <summary>One launch per batch on a GPU; launch with an explicit grid sized to the device.</summary>
    public static void Apply(
        ArrayView<DeviceOp> ops,
        SharedView<int> states,
        SharedView<long> oldValues,
        SharedView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> resident32,
        ArrayView<long> resident64,
        SharedView<int> control,
        SharedView<int> faults,
        SharedView<int> hazards,
        SharedView<int> progress)
    {
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        ApplyShare<SystemScope, PublishHazards>(thread, Grid.DimX * Group.DimX, ops.Length, ops, states, oldValues, table, memory32, memory64, resident32, resident64, control, faults, hazards, progress);
    }

    /// <summary><see cref="Apply"/> for ILGPU's CPU accelerator. Never compiled for a GPU.</summary>
    public static void ApplyOnCpuAccelerator(
        ArrayView<DeviceOp> ops,
        SharedView<int> states,
        SharedView<long> oldValues,
        SharedView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> resident32,
        ArrayView<long> resident64,
        SharedView<int> control,
        SharedView<int> faults,
        SharedView<int> hazards,
        SharedView<int> progress)
    {
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        ApplyShare<CpuAcceleratorScope, PublishHazards>(thread, Grid.DimX * Group.DimX, ops.Length, ops, states, oldValues, table, memory32, memory64, resident32, resident64, control, faults, hazards, progress);
    }

    /// <summary>
    /// <see cref="Apply"/> without hazard words: what the same translation and atomics cost when nothing can take a page
    /// back under the kernel. The baseline "device atomics through the engine" is measured against; not safe under
    /// revocation.
    /// </summary>
    public static void ApplyWithoutHazards(
        ArrayView<DeviceOp> ops,
        SharedView<int> states,
        SharedView<long> oldValues,
        SharedView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> resident32,
        ArrayView<long> resident64,
        SharedView<int> control,
        SharedView<int> faults,
        SharedView<int> hazards,
        SharedView<int> progress)
    {
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        ApplyShare<SystemScope, NoHazards>(thread, Grid.DimX * Group.DimX, ops.Length, ops, states, oldValues, table, memory32, memory64, resident32, resident64, control, faults, hazards, progress);
    }

    /// <summary><see cref="ApplyWithoutHazards"/> for ILGPU's CPU accelerator.</summary>
    public static void ApplyWithoutHazardsOnCpuAccelerator(
        ArrayView<DeviceOp> ops,
        SharedView<int> states,
        SharedView<long> oldValues,
        SharedView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> resident32,
        ArrayView<long> resident64,
        SharedView<int> control,
        SharedView<int> faults,
        SharedView<int> hazards,
        SharedView<int> progress)
    {
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        ApplyShare<CpuAcceleratorScope, NoHazards>(thread, Grid.DimX * Group.DimX, ops.Length, ops, states, oldValues, table, memory32, memory64, resident32, resident64, control, faults, hazards, progress);
    }

    /// <summary>
    /// The resident kernel on a GPU: launch with exactly one group. It serves a batch of <c>control[Count]</c> ops each
    /// time the host rings <c>control[Doorbell]</c> with a new number, stores that number in <c>control[Finished]</c>
    /// when every op of the batch was applied or faulted, and returns when a stop is requested — or, if
    /// <c>control[IdlePolls]</c> is set, after that many empty polls, closing the doorbell first. It polls without pause
    /// (a kernel cannot yield): on the CPU accelerator the poll limit gives the core back quickly when the host has
    /// nothing to send.
    /// </summary>
    public static void Serve(
        ArrayView<DeviceOp> ops,
        SharedView<int> states,
        SharedView<long> oldValues,
        SharedView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> resident32,
        ArrayView<long> resident64,
        SharedView<int> control,
        SharedView<int> faults,
        SharedView<int> hazards,
        SharedView<int> progress) =>
        ServeBatches<SystemScope>(ops, states, oldValues, table, memory32, memory64, resident32, resident64, control, faults, hazards, progress);

    /// <summary><see cref="Serve"/> for ILGPU's CPU accelerator.</summary>
    public static void ServeOnCpuAccelerator(
        ArrayView<DeviceOp> ops,
        SharedView<int> states,
        SharedView<long> oldValues,
        SharedView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> resident32,
        ArrayView<long> resident64,
        SharedView<int> control,
        SharedView<int> faults,
        SharedView<int> hazards,
        SharedView<int> progress) =>
        ServeBatches<CpuAcceleratorScope>(ops, states, oldValues, table, memory32, memory64, resident32, resident64, control, faults, hazards, progress);

    private static void ServeBatches<TScope>(
        ArrayView<DeviceOp> ops,
        SharedView<int> states,
        SharedView<long> oldValues,
        SharedView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> resident32,
        ArrayView<long> resident64,
        SharedView<int> control,
        SharedView<int> faults,
        SharedView<int> hazards,
        SharedView<int> progress)
        where TScope : struct, IHostSharedMemory
    {
        var shared = default(TScope);

        // The first thread polls and broadcasts its decision: threads that decided on their own could disagree about
        // a stop raised between their reads and leave the others waiting at a barrier.
        ref var round = ref SharedMemory.Allocate<int>();
        var idleLimit = shared.LoadRelaxed(control, ControlBlock.IdlePolls);
        var served = 0;
        while (true)
        {
            if (Group.IsFirstThread)
            {
                var polls = 0;
                var bell = shared.LoadAcquire(control, ControlBlock.Doorbell);
                while (bell == served && !StopRequested(shared, control))
                {
                    if (idleLimit > 0 && ++polls >= idleLimit)
                    {
                        // Close the doorbell unless the host rang meanwhile: the host rings with a compare-exchange
                        // too, so exactly one of the two wins and no batch is ever rung into a kernel that left.
                        var seen = shared.CompareExchange(control, ControlBlock.Doorbell, served, ControlBlock.Closed);
                        bell = seen == served ? ControlBlock.Closed : seen;
                        break;
                    }

                    bell = shared.LoadAcquire(control, ControlBlock.Doorbell);
                }

                round = bell == served || bell == ControlBlock.Closed ? -1 : bell;
            }

            Group.Barrier();
            var current = round;
            if (current < 0)
            {
                return;
            }

            // Acquire for every thread: the batch's ops and states are the same host-mapped addresses every time, and
            // only the first thread read the doorbell; without this a thread could read the previous batch's op.
            shared.Fence();

            served = current;
            var count = shared.LoadRelaxed(control, ControlBlock.Count);
            ApplyShare<TScope, PublishHazards>(Group.IdxX, Group.DimX, count, ops, states, oldValues, table, memory32, memory64, resident32, resident64, control, faults, hazards, progress);

            // Every thread is done with the batch (and has read `round`) before the first thread reports and polls again.
            Group.Barrier();
            if (Group.IsFirstThread)
            {
                // The barrier orders the other threads' results before this fence; the release publishes them all.
                shared.Fence();
                shared.StoreRelease(control, ControlBlock.Finished, current);
            }
        }
    }

    /// <summary>Applies ops <paramref name="thread"/>, +<paramref name="stride"/>, … below <paramref name="count"/>.</summary>
    private static void ApplyShare<TScope, THazards>(
        int thread,
        int stride,
        long count,
        ArrayView<DeviceOp> ops,
        SharedView<int> states,
        SharedView<long> oldValues,
        SharedView<long> table,
        ArrayView<int> memory32,
        ArrayView<long> memory64,
        ArrayView<int> resident32,
        ArrayView<long> resident64,
        SharedView<int> control,
        SharedView<int> faults,
        SharedView<int> hazards,
        SharedView<int> progress)
        where TScope : struct, IHostSharedMemory
        where THazards : struct, IHazardPolicy
    {
        var shared = default(TScope);
        var publish = default(THazards).Publishes;
        var hazard = (long)thread * HazardStride;

        // The slot this thread's hazard word names (-1: none). It stays published across consecutive ops on one page —
        // each op still reads the entry, so a host waiting on the word sees it change within one op once the entry is
        // cleared — and is published anew, with the other flip bit, whenever the page changes: a host waiting for one
        // publication sees the next as a change even if it never saw the zero in between. Skipping an op that is no
        // longer pending clears it: the thread works on no page then.
        var published = -1;
        var flip = 0;
        var untilPoll = 0;
        var beats = 0;

        // A page the host refused an op on in this launch: its later ops are left for the host to refuse after it (-1: none).
        var refused = -1;
        var leftPending = false;
        var stopped = false;

        // Ops whose page the host did not map within the first wait: the thread goes on with its other ops and comes
        // back to these at the end of its share, so one page being revoked does not hold its other pages up.
        var deferred = LocalMemory.Allocate<long>(MaxDeferredOps);
        var deferredCount = 0;
        for (long i = thread; i < count; i += stride)
        {
            if (--untilPoll <= 0)
            {
                if (StopRequested(shared, control))
                {
                    stopped = true;
                    break;
                }

                shared.StoreRelaxed(progress, ProgressHeartbeat(thread), ++beats);
                untilPoll = StopPollOps;
            }

            if (shared.LoadRelaxed(states, i) != OpState.Pending)
            {
                LeaveSkippedPage(shared, hazards, hazard, ref published);
                continue;
            }

            var outcome = ApplyOne<TScope>(
                shared, publish, i, thread, shared.GrantSpinLimit, refused, ops, states, oldValues, table, memory32, memory64, resident32, resident64, control, faults, hazards, progress, ref published, ref flip, ref beats);
            if (outcome == Outcome.Stopped)
            {
                stopped = true;
                break;
            }

            if (outcome == Outcome.Refused)
            {
                refused = ops[i].Slot;
            }
            else if (outcome == Outcome.NotGranted)
            {
                if (deferredCount < MaxDeferredOps)
                {
                    deferred[deferredCount++] = i;
                }
                else
                {
                    leftPending = true;
                }
            }
            else if (outcome == Outcome.LeftForHost)
            {
                leftPending = true;
            }
        }

        // The sweep: the deferred ops, each with a longer wait; what is still not granted is left for a replay.
        for (var d = 0; d < deferredCount && !stopped; d++)
        {
            var i = deferred[d];
            if (shared.LoadRelaxed(states, i) != OpState.Pending)
            {
                LeaveSkippedPage(shared, hazards, hazard, ref published);
                continue;
            }

            var outcome = ApplyOne<TScope>(
                shared, publish, i, thread, shared.GrantSpinLimit * SweepWaitFactor, refused, ops, states, oldValues, table, memory32, memory64, resident32, resident64, control, faults, hazards, progress, ref published, ref flip, ref beats);
            if (outcome == Outcome.Stopped)
            {
                stopped = true;
            }
            else if (outcome == Outcome.Refused)
            {
                refused = ops[i].Slot;
            }
            else if (outcome != Outcome.Applied)
            {
                leftPending = true;
            }
        }

        if (leftPending)
        {
            // Said once per thread: the host scans the batch after the launch (a stop it knows of by itself).
            shared.Or(control, ControlBlock.LeftPending, 1);
        }

        if (published >= 0)
        {
            ChangeHazard(shared, hazards, hazard, 0);
        }
    }

    /// <summary>
    /// A thread skipping an op that is no longer pending (applied by an earlier launch, or refused) is not working on
    /// any page: it clears its hazard word, once, so that a revocation of the page it last used does not wait until it
    /// reaches its next pending op — a whole replayed share of skipped ops, perhaps.
    /// </summary>
    private static void LeaveSkippedPage<TScope>(TScope shared, SharedView<int> hazards, long hazard, ref int published)
        where TScope : struct, IHostSharedMemory
    {
        if (published >= 0)
        {
            ChangeHazard(shared, hazards, hazard, 0);
            published = -1;
        }
    }

    /// <summary>
    /// Changes or clears a thread's hazard word: a release (the atomics applied under the old word reach host memory
    /// before a host waiting on the word sees it change), then the store-load fence of the Dekker pair, so the word is
    /// visible before the next entry is read.
    /// </summary>
    private static void ChangeHazard<TScope>(TScope shared, SharedView<int> hazards, long index, int word)
        where TScope : struct, IHostSharedMemory
    {
        shared.StoreRelease(hazards, index, word);
        shared.FenceStoreLoad();
    }

    /// <summary>
    /// Reads the stop word: true when a stop is requested. A stall (tests only) spins here, with whatever hazard word
    /// the thread has published, until it is cleared.
    /// </summary>
    private static bool StopRequested<TScope>(TScope shared, SharedView<int> control)
        where TScope : struct, IHostSharedMemory
    {
        var word = shared.LoadAcquire(control, ControlBlock.Stop);
        while ((word & ControlBlock.StallForTest) != 0)
        {
            word = shared.LoadAcquire(control, ControlBlock.Stop);
        }

        return (word & ControlBlock.StopRequested) != 0;
    }

    /// <summary>
    /// Ints between two threads' hazard words: one 64-byte line each, so that publishing a word never moves a line
    /// another thread is publishing to (on the CPU accelerator that false sharing cost more than the atomics).
    /// </summary>
    public const int HazardStride = 16;

    /// <summary>Ops between two polls of the stop word: a poll is a load of a line every thread shares.</summary>
    public const int StopPollOps = 64;

    /// <summary>The hazard word of a thread working through <paramref name="slot"/> (0 is "none").</summary>
    public static int HazardWord(int slot, int flip) => ((slot + 1) << 1) | flip;

    /// <summary>The slot a non-zero hazard word names.</summary>
    public static int HazardSlot(int word) => (word >> 1) - 1;

    /// <summary>Applies one 32-bit atomic (GPU scope: see the remarks) and returns the old value, sign-extended.</summary>
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

    /// <summary>Applies one 64-bit atomic (GPU scope: see the remarks) and returns the old value.</summary>
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
