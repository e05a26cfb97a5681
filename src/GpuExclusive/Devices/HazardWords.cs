using System.Runtime.CompilerServices;
using GpuExclusive.Kernels;

namespace GpuExclusive.Devices;

/// <summary>
/// The host's half of the hazard protocol (docs/architecture.md, "the hazard protocol"; the kernel's half is
/// <see cref="AtomicBatchKernel"/>'s <c>ChangeHazard</c>): one word per kernel thread naming the slot whose entry it is
/// reading or whose page it is applying an atomic to, a count of kernel launches in flight, and the wait an
/// invalidation does after clearing entries.
/// </summary>
internal sealed class HazardWords
{
    private readonly HostMappedArray<int> _words;
    private readonly DeviceExecutor _executor;

    // Kernel launches begun and not yet synchronized (raised before the launch, lowered only after a synchronize that
    // returned, so a launch that failed leaves it raised: the safe side). While it is zero no kernel thread can be
    // between publishing a hazard word and finishing its op, which lets WaitFor skip the scan (and disposal's
    // handshake) for the common revocation of a page whose device is idle.
    private int _kernelsInFlight;

    // Invalidation callbacks inside WaitFor: a callback can still be running when its mirror's registration is removed,
    // so disposal waits for them before it frees the words.
    private int _waiters;

    // Set once by the device's disposal, before it drains _waiters.
    private volatile bool _closed;

    /// <param name="words">One 64-byte line per kernel thread (<see cref="AtomicBatchKernel.HazardStride"/> ints).</param>
    /// <param name="executor">The device's executor: its deadline bounds each wait, and a failed device is not waited for.</param>
    internal HazardWords(HostMappedArray<int> words, DeviceExecutor executor)
    {
        _words = words;
        _executor = executor;
    }

    /// <summary>The words as the kernels see them.</summary>
    internal SharedView<int> Shared => _words.Shared();

    /// <summary>The words' memory (for the device to retire on disposal).</summary>
    internal HostMappedArray<int> Memory => _words;

    /// <summary>Kernel launches begun and not yet synchronized (for tests: revocations skip the scan at zero).</summary>
    internal int KernelsInFlight => Volatile.Read(ref _kernelsInFlight);

    /// <summary>Counts a launch in flight: call before the kernel starts.</summary>
    internal void LaunchBegins() => Interlocked.Increment(ref _kernelsInFlight);

    /// <summary>Counts a launch out: call only after a synchronize that returned.</summary>
    internal void LaunchEnded() => Interlocked.Decrement(ref _kernelsInFlight);

    /// <summary>
    /// Waits until no kernel thread's hazard word names one of <paramref name="clearedSlots"/> (entries the caller has
    /// just cleared with a full fence): after that no thread can still apply an atomic through them.
    /// </summary>
    /// <remarks>
    /// More than 16 slots are sorted here (in place) and then binary-searched. Bounded by the device deadline: a thread
    /// that keeps its word past it gets the device declared failed, and the revocation goes on.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void WaitFor(Span<int> clearedSlots)
    {
        // The caller's clears were full fences, so this read comes after them: if no kernel is in flight now, none can
        // hold a hazard on those entries, and any launched later (its launch raises the count first) reads them cleared.
        if (Volatile.Read(ref _kernelsInFlight) != 0)
        {
            WaitForKernelsInFlight(clearedSlots);
        }
    }

    /// <summary>Closes the words (the device is being disposed) and waits for the invalidations inside <see cref="WaitFor"/> to leave.</summary>
    internal void CloseAndDrain()
    {
        _closed = true;
        Interlocked.MemoryBarrier(); // _closed before reading the count: the other half of WaitForKernelsInFlight's handshake
        var spin = default(SpinWait);
        while (Volatile.Read(ref _waiters) != 0)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForKernelsInFlight(Span<int> clearedSlots)
    {
        if (clearedSlots.Length > 16)
        {
            clearedSlots.Sort();
        }

        // Registered before looking at _closed (both full fences): disposal sets _closed and then waits for this count
        // to drain before it frees the words, so a waiter either sees the device closed or is waited for.
        Interlocked.Increment(ref _waiters);
        try
        {
            if (_closed || _executor.Failure is not null)
            {
                return; // the device is gone, and its kernels with it; or it failed, and nothing waits on it any more
            }

            var deadline = _executor.StartDeadline();
            for (var word = 0L; word < _words.Length; word += AtomicBatchKernel.HazardStride)
            {
                var hazard = Volatile.Read(ref _words[word]);
                if (hazard == 0 || !Names(clearedSlots, AtomicBatchKernel.HazardSlot(hazard)))
                {
                    continue;
                }

                // The thread read the entry before it was cleared (or is about to see it cleared): wait for it to move
                // on. Its op takes nanoseconds; the wait is long only if the OS preempted that thread.
                var spin = default(SpinWait);
                while (Volatile.Read(ref _words[word]) == hazard)
                {
                    if (deadline.ExpiredWhileSpinning())
                    {
                        // Never throws into the invalidation: the revocation goes on, the device is failed.
                        _executor.Fail("a kernel thread to finish an op on a page being revoked (its hazard word)");
                        return;
                    }

                    if (_executor.Failure is not null)
                    {
                        return;
                    }

                    spin.SpinOnce(sleep1Threshold: -1);
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _waiters);
        }

        static bool Names(Span<int> slots, int slot) => slots.Length > 16 ? slots.BinarySearch(slot) >= 0 : slots.Contains(slot);
    }
}
