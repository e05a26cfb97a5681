using System.Runtime.CompilerServices;

namespace GpuExclusive.Memory;

/// <summary>
/// The page lock of a frame (Linux <c>folio_lock</c>): a sleeping lock whose whole state is one int in
/// <see cref="FrameMeta.State"/> (shared with the frame flags, which it never touches), with waiters parked on a small hashed table of monitors, as Linux parks
/// folio waiters on <c>folio_wait_table</c>. The lock is not owned by a thread: a grant may lock a frame on one
/// thread and unlock it on another, like the kernel's folio lock.
/// </summary>
internal static class FrameLock
{
    private const int LockedBit = 1;
    private const int OneWaiter = 2;
    // Bits 1–19 count waiters; the flags above them are not the lock's business.
    private const int WaiterMask = ((1 << 20) - 1) & ~LockedBit;
    private const int SpinsBeforeSleeping = 64;

    // Hashed wait queues: frames that share a gate just wake each other spuriously.
    private static readonly object[] Gates = CreateGates(256);

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

    /// <summary>Locks the frame, sleeping while another holder has it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Lock(ref int lockWord, long frame)
    {
        if (!TryLock(ref lockWord))
        {
            LockContended(ref lockWord, frame);
        }
    }

    // Out of line: the uncontended lock above is all a revocation or a grant normally runs.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LockContended(ref int lockWord, long frame)
    {
        var spinner = new SpinWait();
        for (var i = 0; i < SpinsBeforeSleeping; i++)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
            if (TryLock(ref lockWord))
            {
                return;
            }
        }

        var gate = Gates[frame & (Gates.Length - 1)];
        lock (gate)
        {
            Interlocked.Add(ref lockWord, OneWaiter);
            while (!TryLock(ref lockWord))
            {
                // Unlock pulses this gate under the same monitor, after clearing the bit: no lost wake-up.
                Monitor.Wait(gate);
            }

            Interlocked.Add(ref lockWord, -OneWaiter);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Unlock(ref int lockWord, long frame)
    {
        var before = Interlocked.And(ref lockWord, ~LockedBit);
        System.Diagnostics.Debug.Assert((before & LockedBit) != 0, "Unlock of a frame that is not locked");
        if ((before & WaiterMask) != 0)
        {
            WakeWaiters(frame);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WakeWaiters(long frame)
    {
        var gate = Gates[frame & (Gates.Length - 1)];
        lock (gate)
        {
            Monitor.PulseAll(gate);
        }
    }

    private static object[] CreateGates(int count)
    {
        var gates = new object[count];
        for (var i = 0; i < gates.Length; i++)
        {
            gates[i] = new object();
        }

        return gates;
    }
}
