using ILGPU;

namespace GpuExclusive.Kernels;

// One op, and the replayable device fault (docs/architecture.md, "device faults and the quantum"): translate, apply,
// or record the fault and wait for the host to map the page.
internal static partial class AtomicBatchKernel
{
    /// <summary>Ops a thread defers (their page was not mapped within the first wait) before it leaves further ones pending.</summary>
    private const int MaxDeferredOps = 16;

    /// <summary>How many times longer than the first wait the end-of-share sweep waits for a deferred op's page.</summary>
    private const int SweepWaitFactor = 16;

    /// <summary>How <see cref="ApplyOne"/> ended.</summary>
    private static class Outcome
    {
        public const int Applied = 0;     // the atomic is applied and its old value and state stored
        public const int Refused = 1;     // the host refused the op (not mapped, not writable): its state says which
        public const int Stopped = 2;     // a stop was requested: leave the launch
        public const int NotGranted = 3;  // the page was not mapped within the wait: the op stays pending
        public const int LeftForHost = 4; // the host refused an op on this page before: left pending for it to refuse
    }

    /// <summary>How a wait for the host to map a faulted page ended.</summary>
    private static class Wait
    {
        public const int Granted = 0;  // the entry is Atomic: try the op again
        public const int Refused = 1;  // the host marked the op refused (not mapped, not writable)
        public const int Stop = 2;     // a stop was requested: leave the launch
        public const int GaveUp = 3;   // no grant within the spin limit: the op stays pending
    }

    /// <summary>
    /// Applies op <paramref name="i"/>: publishes the hazard word, reads the entry and applies the atomic; on a device
    /// fault waits up to <paramref name="waitLimit"/> polls for the host to map the page, then tries again.
    /// </summary>
    private static int ApplyOne<TScope>(
        TScope shared,
        bool publish,
        long i,
        int thread,
        int waitLimit,
        int refused,
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
        SharedView<int> progress,
        ref int published,
        ref int flip,
        ref int beats)
        where TScope : struct, IHostSharedMemory
    {
        var op = ops[i];
        var awaited = false;
        var hazard = (long)thread * HazardStride;
        long entry;
        while (true)
        {
            if (publish && op.Slot != published)
            {
                flip ^= 1;
                ChangeHazard(shared, hazards, hazard, HazardWord(op.Slot, flip));
                published = op.Slot;
            }

            entry = shared.LoadAcquire(table, op.Slot);
            if (DevicePte.Permission(entry) == DevicePte.Atomic)
            {
                if (awaited)
                {
                    // Only now, with the hazard word published and the entry read Atomic, does this thread stop naming
                    // the op it awaited: a revocation that waits for that (the grant's floor) is then covered by the
                    // hazard wait, so the op is applied before the page goes.
                    shared.StoreRelaxed(progress, ProgressAwaited(thread), 0);
                }

                break;
            }

            // A device fault. Leave the page: nothing may wait for this thread while it waits for the host.
            if (published >= 0)
            {
                ChangeHazard(shared, hazards, hazard, 0);
                published = -1;
            }

            if (op.Slot == refused)
            {
                return Outcome.LeftForHost;
            }

            var waited = AwaitGrant(shared, i, op.Slot, thread, waitLimit, states, table, control, faults, progress, ref beats);
            if (waited == Wait.Stop)
            {
                return Outcome.Stopped;
            }

            if (waited == Wait.Refused)
            {
                return Outcome.Refused;
            }

            if (waited == Wait.GaveUp)
            {
                return Outcome.NotGranted;
            }

            // Mapped again: publish and read the entry once more (the Dekker pair), then apply.
            awaited = true;
        }

        // A resident page is in the device's own memory (its slot), any other in the pool, in host memory.
        var byteOffset = (DevicePte.Frame(entry) << PageShift) + op.Offset;
        long old;
        if (DevicePte.IsResident(entry))
        {
            old = op.Is64Bit != 0
                ? Apply64(ref resident64[byteOffset >> 3], op.Code, op.Operand, op.Comparand)
                : Apply32(ref resident32[byteOffset >> 2], op.Code, (int)op.Operand, (int)op.Comparand);
        }
        else
        {
            old = op.Is64Bit != 0
                ? Apply64(ref memory64[byteOffset >> 3], op.Code, op.Operand, op.Comparand)
                : Apply32(ref memory32[byteOffset >> 2], op.Code, (int)op.Operand, (int)op.Comparand);
        }

        // No fence per op: the host reads states and old values only after the launch has returned, or after the
        // resident kernel's fenced Finished report, both of which publish everything before them.
        shared.StoreRelaxed(oldValues, i, old);
        shared.StoreRelaxed(states, i, OpState.Done);
        return Outcome.Applied;
    }

    /// <summary>
    /// A replayable device fault (docs/architecture.md, "device faults and the quantum"): records op
    /// <paramref name="op"/> in the fault ring and spins until the host maps the page Atomic again, refuses the op, asks
    /// the kernel to stop, or the spin limit passes. The thread holds no hazard word meanwhile, and names the op it
    /// waits for in its progress words — which is how a revocation tells "granted but not yet used" from "used" — until
    /// it has used the page (its caller clears the word) or stopped waiting (cleared here).
    /// </summary>
    private static int AwaitGrant<TScope>(
        TScope shared,
        long op,
        int slot,
        int thread,
        int waitLimit,
        SharedView<int> states,
        SharedView<long> table,
        SharedView<int> control,
        SharedView<int> faults,
        SharedView<int> progress,
        ref int beats)
        where TScope : struct, IHostSharedMemory
    {
        shared.StoreRelaxed(progress, ProgressAwaited(thread), (int)op + 1);

        // Mark the entry wanted — a CPU access that has just taken the page back gives it straight back when it is done
        // — and record the fault for the host, unless another thread did both already (the host clears the mark when it
        // writes the entry, and when it refuses the page). Always the interlocked or, whose old value is the only
        // answer to "marked already?": the entry the caller read may have lost its mark since (a host write), and a
        // thread that trusted it would record nothing and wait out its whole limit for a grant nobody knows it needs.
        if (!DevicePte.IsWanted(shared.Or(table, slot, DevicePte.Wanted)))
        {
            // The ring's length is a power of two; an entry is op + 1 (0: not yet written) and the host zeroes what it took.
            // A release: the host that takes the record grants the page with this op as its hold's floor, and reads the
            // awaited-op word stored above to tell whether the thread has used the page yet — it must see that store.
            var at = shared.Add(control, ControlBlock.FaultCount, 1);
            shared.StoreRelease(faults, at & (faults.Length - 1), (int)op + 1);
        }

        var outcome = Wait.GaveUp;
        for (var spins = 1; spins <= waitLimit; spins++)
        {
            if ((spins & (StopPollOps - 1)) == 0)
            {
                if (StopRequested(shared, control))
                {
                    outcome = Wait.Stop;
                    break;
                }

                // Waiting for the host is not a stall of the device: the kernel still answers.
                shared.StoreRelaxed(progress, ProgressHeartbeat(thread), ++beats);
                if (shared.LoadRelaxed(states, op) != OpState.Pending)
                {
                    outcome = Wait.Refused;
                    break;
                }
            }

            if (DevicePte.Permission(shared.LoadAcquire(table, slot)) == DevicePte.Atomic)
            {
                return Wait.Granted; // still naming the op: see the caller
            }
        }

        shared.StoreRelaxed(progress, ProgressAwaited(thread), 0);
        return outcome;
    }

    /// <summary>Ints per thread in the progress array: its heartbeat, and the op it awaits a grant for (+1; 0 none).</summary>
    public const int ProgressStride = 2;

    /// <summary>The index of a thread's heartbeat in the progress array.</summary>
    public static long ProgressHeartbeat(int thread) => (long)thread * ProgressStride;

    /// <summary>The index of the op (+1) a thread awaits a grant for, in the progress array.</summary>
    public static long ProgressAwaited(int thread) => ((long)thread * ProgressStride) + 1;
}
