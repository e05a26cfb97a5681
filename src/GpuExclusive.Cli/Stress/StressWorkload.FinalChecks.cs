using System.Runtime.InteropServices;
using static GpuExclusive.Cli.Stress.CounterLayout;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The checks that need every thread stopped: every counter equals the sum of its tracked CPU and device adds, every
/// slot holds its last write, every device's permutation counter has no gap, and after disposal every frame is back in
/// the pool.
/// </summary>
internal sealed partial class StressWorkload
{
    /// <summary>
    /// Runs the checks that need every thread joined, each guarded: one that throws is a violation of its own, and the
    /// others still run.
    /// </summary>
    private void RunFinalChecks()
    {
        Guard("final check", CheckFinalState);
        Guard("final exactly-once check", CheckPermutations);
        Guard("final invariant check", RunInvariantChecker);
        FinalChecksRan = true;
    }

    /// <summary>After every thread stopped: each counter equals the sum of its tracked adds, each slot its last write.</summary>
    private void CheckFinalState()
    {
        int pages = _options.CounterPages;
        Span<int> counters = stackalloc int[CountersPerPage];
        var zeros = new byte[ChurnSlotOffset - ZeroOffset];
        for (int page = 0; page < pages; page++)
        {
            _space.Read(Counter(_counters, page, 0), MemoryMarshal.AsBytes(counters));
            for (int c = 0; c < CountersPerPage; c++)
            {
                long expected = 0;
                foreach (WorkerState worker in _workers)
                    expected += worker.Added[(page * CountersPerPage) + c];
                foreach (DeviceState device in _deviceStates)
                    expected += device.Added[(page * CountersPerPage) + c];
                if (counters[c] != unchecked((int)expected))
                    Violate($"final: counter 0x{Counter(_counters, page, c):x} is {counters[c]}, its tracked CPU and device adds sum to {expected} (lost or duplicated updates)", Invariants.CounterTotals);
            }

            for (int w = 0; w < _workers.Length; w++)
            {
                long slot = _space.Read<long>(WorkerSlot(_counters, page, w));
                if (slot != _workers[w].ExpectedSlots[page])
                    Violate($"final: worker {w}'s slot on page {page} is 0x{slot:x}, it last wrote 0x{_workers[w].ExpectedSlots[page]:x}");
            }

            long churn = _space.Read<long>(ChurnSlot(_counters, page));
            if (churn != _churnSlots[page])
                Violate($"final: churn slot on page {page} is 0x{churn:x}, expected 0x{_churnSlots[page]:x}");

            _space.Read(_counters + ((ulong)page * PagePool.PageSize) + ZeroOffset, zeros);
            if (zeros.AsSpan().IndexOfAnyExcept((byte)0) is int offset and >= 0)
                Violate($"final: never-written byte at page {page} offset {ZeroOffset + offset} is 0x{zeros[offset]:x2}");
        }
    }

    private void CheckPermutations()
    {
        for (int d = 0; d < _deviceStates.Length; d++)
        {
            int value = _space.Read<int>(PermutationCounter(d));
            if (_deviceStates[d].Permutation.Finish(value) is { } problem)
                Violate($"final: device {d}'s permutation counter 0x{PermutationCounter(d):x}: {problem}", Invariants.ExactlyOnce);
        }
    }

    /// <summary>After the address space was disposed: every frame it held must be back in the pool.</summary>
    private void CheckFramesReturned()
    {
        FreePagesAfterDispose = _pool.FreePages;
        if (FreePagesAfterDispose != _pool.Capacity)
            Violate($"after disposing the address space the pool has {FreePagesAfterDispose} free frames of {_pool.Capacity}: {_pool.Capacity - FreePagesAfterDispose} frames leaked", Invariants.FramesReturned);
    }
}
