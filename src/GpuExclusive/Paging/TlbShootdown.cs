using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GpuExclusive.Paging;

/// <summary>
/// The software TLB shootdown for stores. A CPU write through the engine translates a PTE and then stores to the
/// frame; whoever narrows or replaces a PTE (unmap, protect, COW, grant, fork's write-protect) must not go on while a
/// store that translated through the old entry is still running, or it could land on a page that is no longer the
/// writer's. Linux gets this from the TLB flush IPI. (Reads need none of this: they validate against the leaf's
/// sequence count, <see cref="PageTableLeaf.Version"/>, and retry.)
/// </summary>
/// <remarks>
/// Each thread owns a slot holding a sequence: odd while it is inside a write access. An access bumps it to odd,
/// loads the PTE, touches memory and bumps it to even — two plain stores to a thread-private cache line, no
/// interlocked instruction. The writer changes the PTE, then <see cref="Interlocked.MemoryBarrierProcessWide"/>
/// (the <c>membarrier</c> syscall: the IPI) makes every running thread's slot store visible, or orders its PTE
/// load after the change; the writer then waits for every slot that was odd to move on. The asymmetric fence keeps
/// the cost on the rare writer, as Linux does. An accessor never blocks while its slot is odd.
/// Like Linux, which sends the flush IPI only to the CPUs in the mm's cpumask, the barrier is skipped when no thread
/// but the flusher has ever claimed a slot and is still alive: no other thread can be inside an access then, and one
/// that claims a slot afterwards does so with an interlocked operation before its first PTE load, which the flusher's
/// full fence pairs with (a single-threaded user — a ping-pong between one thread and a device — never pays the IPI).
/// </remarks>
internal static class TlbShootdown
{
    private const int MaxSlots = 4096;

    private static readonly Slot[] Slots = GC.AllocateArray<Slot>(MaxSlots, pinned: true);
    private static readonly Thread?[] Owners = new Thread?[MaxSlots];
    private static int _claimed;

    [ThreadStatic]
    private static int t_slotPlusOne;

    /// <summary>Marks the calling thread as inside an access; pair with <see cref="Exit"/>. Never nest.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ref long Enter()
    {
        var index = t_slotPlusOne - 1;
        if (index < 0)
        {
            index = Claim();
        }

        ref var sequence = ref Slots[index].Sequence;
        Debug.Assert((sequence & 1) == 0, "nested CPU access: an access must not start inside another");
        // Plain store; the writer's process-wide barrier supplies the store→load ordering against the PTE load.
        Volatile.Write(ref sequence, sequence + 1);
        return ref sequence;
    }

    /// <summary>Marks the end of the access begun by <see cref="Enter"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Exit(ref long sequence) => Volatile.Write(ref sequence, sequence + 1);

    /// <summary>True while the calling thread is inside an access (for assertions).</summary>
    internal static bool IsInsideAccess
    {
        get
        {
            var index = t_slotPlusOne - 1;
            return index >= 0 && (Volatile.Read(ref Slots[index].Sequence) & 1) != 0;
        }
    }

    /// <summary>
    /// Waits until every CPU access that may have translated through a PTE changed before this call has finished.
    /// Call after publishing the PTE change and before reusing or handing out what the old PTE pointed at.
    /// </summary>
    /// <returns>True if it issued the process-wide barrier; false if no other thread could be inside an access.</returns>
    internal static bool Flush()
    {
        Debug.Assert(!IsInsideAccess, "a shootdown from inside an access would wait for itself");
        // Orders the caller's PTE change before the reads of the claim count and owners below; the other side of that
        // Dekker pair is the interlocked operation by which a thread claims its slot, before its first PTE load.
        Interlocked.MemoryBarrier();
        // Unsigned: the count keeps rising past MaxSlots with every claim that reclaims a dead thread's slot, and would
        // wrap negative after 2^31 of them.
        var claimed = (int)Math.Min((uint)Volatile.Read(ref _claimed), MaxSlots);
        if (!AnotherThreadMayAccess(Owners.AsSpan(0, claimed), t_slotPlusOne - 1))
        {
            // Orders the owners' reads (a dead thread's last stores included) before the caller reuses what the old PTE
            // pointed at; free on x86, where loads are not reordered with later stores, but not on ARM64.
            Interlocked.MemoryBarrier();
            Diagnostics.EngineMetrics.Shootdowns.Add(1);
            return false;
        }

        Interlocked.MemoryBarrierProcessWide();
        for (var i = 0; i < claimed; i++)
        {
            var seen = Volatile.Read(ref Slots[i].Sequence);
            if ((seen & 1) == 0)
            {
                continue;
            }

            var spinner = new SpinWait();
            while (Volatile.Read(ref Slots[i].Sequence) == seen)
            {
                spinner.SpinOnce();
            }
        }

        Diagnostics.EngineMetrics.Shootdowns.Add(1);
        return true;
    }

    /// <summary>
    /// False only if every one of <paramref name="owners"/> (the claimed slots) is the slot <paramref name="own"/> or
    /// owned by a dead thread: then no other thread can be inside an access, nor enter one without an interlocked
    /// claim first. A claimed slot whose owner is not yet written counts as another thread.
    /// </summary>
    internal static bool AnotherThreadMayAccess(ReadOnlySpan<Thread?> owners, int own)
    {
        for (var i = 0; i < owners.Length; i++)
        {
            if (i == own)
            {
                continue;
            }

            var owner = Volatile.Read(ref Unsafe.AsRef(in owners[i]));
            if (owner is null || owner.IsAlive)
            {
                return true;
            }
        }

        return false;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Claim()
    {
        var current = Thread.CurrentThread;
        var index = Interlocked.Increment(ref _claimed) - 1;
        if (index >= MaxSlots)
        {
            index = ReclaimSlotOfDeadThread(current);
        }
        else
        {
            Volatile.Write(ref Owners[index], current);
        }

        t_slotPlusOne = index + 1;
        return index;
    }

    private static int ReclaimSlotOfDeadThread(Thread current)
    {
        while (true)
        {
            for (var i = 0; i < MaxSlots; i++)
            {
                var owner = Volatile.Read(ref Owners[i]);
                // A dead thread's slot is even: it can only have died outside an access.
                if (owner is { IsAlive: false } && Interlocked.CompareExchange(ref Owners[i], current, owner) == owner)
                {
                    return i;
                }
            }

            Thread.Sleep(1);
        }
    }

    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct Slot
    {
        // Alone on two cache lines, so accessors never share a line (adjacent-line prefetch included).
        [FieldOffset(0)]
        public long Sequence;
    }
}
