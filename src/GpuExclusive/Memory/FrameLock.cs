using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace GpuExclusive.Memory;

/// <summary>
/// The page lock of a frame (Linux <c>folio_lock</c>): a sleeping lock whose whole state is one int in
/// <see cref="FrameMeta.State"/> (shared with the frame flags, which it never touches), with waiters parked on a small
/// hashed table of gates, as Linux parks folio waiters on <c>folio_wait_table</c>. The lock is not owned by a thread: a
/// grant may lock a frame on one thread and unlock it on another, like the kernel's folio lock.
/// </summary>
/// <remarks>
/// <para>
/// The lock is handed off in FIFO order (docs/architecture.md, "FIFO hand-off"): an unlock that finds parked waiters
/// does not clear the locked bit but gives the lock to the waiter that parked first, so neither a <see cref="TryLock"/>
/// nor a newcomer can overtake a parked waiter. That is what lets a CPU access waiting for a page a device holds be
/// served before the device (or another device) can take the page again.
/// </para>
/// <code>
///  31             20 19                                    1      0
/// +-----------------+---------------------------------------+--------+
/// | frame flags     | parked waiters (count)                | locked |
/// | (not the lock's)|                                       |        |
/// +-----------------+---------------------------------------+--------+
/// </code>
/// </remarks>
internal static class FrameLock
{
    private const int LockedBit = 1;
    private const int OneWaiter = 2;
    // Bits 1–19 count parked waiters; the flags above them are not the lock's business.
    private const int WaiterMask = ((1 << 20) - 1) & ~LockedBit;
    private const int SpinsBeforeSleeping = 64;

    // Hashed wait queues: frames that share a gate just wake each other spuriously, and keep one FIFO between them.
    private static readonly Gate[] Gates = CreateGates(256);

    /// <summary>Takes the lock if it is free; never overtakes a parked waiter (the bit stays set while one is handed it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool TryLock(ref int lockWord)
    {
        while (true)
        {
            var word = Volatile.Read(ref lockWord);
            if ((word & LockedBit) != 0)
            {
                return false;
            }

            // A failed exchange may only mean a flag or the waiter count changed: look again.
            if (Interlocked.CompareExchange(ref lockWord, word | LockedBit, word) == word)
            {
                return true;
            }
        }
    }

    internal static bool IsLocked(ref int lockWord) => (Volatile.Read(ref lockWord) & LockedBit) != 0;

    /// <summary>True while some thread is parked waiting for the lock.</summary>
    internal static bool HasWaiters(ref int lockWord) => (Volatile.Read(ref lockWord) & WaiterMask) != 0;

    /// <summary>Locks the frame, sleeping while another holder has it; parked waiters get it in the order they parked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Lock(ref int lockWord, long frame)
    {
        if ((Volatile.Read(ref lockWord) & WaiterMask) != 0 || !TryLock(ref lockWord))
        {
            LockContended(ref lockWord, frame);
        }
    }

    // Out of line: the uncontended lock above is all a revocation or a grant normally runs.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LockContended(ref int lockWord, long frame)
    {
        // Spin only while nobody is parked: a spinner that took a lock just handed... cannot happen (the bit stays
        // set through a hand-off), but one that took a lock freed with waiters parked would overtake them.
        var spinner = new SpinWait();
        for (var i = 0; i < SpinsBeforeSleeping && (Volatile.Read(ref lockWord) & WaiterMask) == 0; i++)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
            if ((Volatile.Read(ref lockWord) & WaiterMask) == 0 && TryLock(ref lockWord))
            {
                return;
            }
        }

        var gate = Gates[frame & (Gates.Length - 1)];
        lock (gate)
        {
            // Counted before the last try, under the gate: an unlock that sees no waiter clears the bit (and this try
            // takes it); one that sees this waiter takes the gate to hand the lock over, after this thread parked.
            Interlocked.Add(ref lockWord, OneWaiter);
            if (gate.QueueIsEmptyFor(frame) && TryLock(ref lockWord))
            {
                Interlocked.Add(ref lockWord, -OneWaiter);
                return;
            }

            var waiter = gate.Enqueue(frame);
            while (!waiter.Granted)
            {
                // Unlock hands over under this gate and pulses it: no lost wake-up.
                Monitor.Wait(gate);
            }

            // The lock came with the hand-off: the bit was never cleared.
            Interlocked.Add(ref lockWord, -OneWaiter);
            Debug.Assert(IsLocked(ref lockWord), "a handed-off frame lock must still be locked");
        }
    }

    /// <summary>Unlocks the frame, or hands it to the waiter that parked first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Unlock(ref int lockWord, long frame)
    {
        while (true)
        {
            var word = Volatile.Read(ref lockWord);
            Debug.Assert((word & LockedBit) != 0, "Unlock of a frame that is not locked");
            if ((word & WaiterMask) != 0)
            {
                HandOffOrUnlock(ref lockWord, frame);
                return;
            }

            if (Interlocked.CompareExchange(ref lockWord, word & ~LockedBit, word) == word)
            {
                return;
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void HandOffOrUnlock(ref int lockWord, long frame)
    {
        var gate = Gates[frame & (Gates.Length - 1)];
        lock (gate)
        {
            if (gate.HandOff(frame))
            {
                Monitor.PulseAll(gate);
                return;
            }

            // Waiters were counted but none is parked for this frame yet (one is between counting and parking: it holds
            // the gate then, so this cannot happen) — or they all left: unlock plainly.
            Interlocked.And(ref lockWord, ~LockedBit);
        }
    }

    private static Gate[] CreateGates(int count)
    {
        var gates = new Gate[count];
        for (var i = 0; i < gates.Length; i++)
        {
            gates[i] = new Gate();
        }

        return gates;
    }

    /// <summary>One wait queue, shared by the frames that hash to it; guarded by locking the gate itself.</summary>
    private sealed class Gate
    {
        private readonly LinkedList<Waiter> _queue = new();

        internal Waiter Enqueue(long frame)
        {
            var waiter = new Waiter(frame);
            _queue.AddLast(waiter);
            return waiter;
        }

        internal bool QueueIsEmptyFor(long frame)
        {
            foreach (var waiter in _queue)
            {
                if (waiter.Frame == frame)
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>Grants the lock to the first waiter parked for <paramref name="frame"/>; false if there is none.</summary>
        internal bool HandOff(long frame)
        {
            for (var node = _queue.First; node is not null; node = node.Next)
            {
                if (node.Value.Frame == frame)
                {
                    node.Value.Granted = true;
                    _queue.Remove(node);
                    return true;
                }
            }

            return false;
        }
    }

    private sealed class Waiter(long frame)
    {
        internal long Frame { get; } = frame;

        internal bool Granted { get; set; }
    }
}
