using System.Runtime.InteropServices;
using static GpuExclusive.Cli.Stress.CounterLayout;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The CPU workers: random AtomicAdds, counter reads, writes to slots only they write, span reads across page boundaries
/// and Inspects, each checked against what the worker itself added, read and wrote.
/// </summary>
internal sealed partial class StressWorkload
{
    private void WorkerLoop(int worker, ThreadActivity activity)
    {
        try
        {
            RunWorker(worker, activity);
        }
        finally
        {
            // The last worker out stops the other threads: with --ops, once the budget is spent.
            if (Interlocked.Decrement(ref _workersRunning) == 0)
                RequestStop();
        }
    }

    private void RunWorker(int worker, ThreadActivity activity)
    {
        WorkerState state = _workers[worker];
        StressStats stats = state.Stats;
        var random = SplitMix64.ForThread(_options.Seed, worker);
        int pages = _options.CounterPages;
        long allowance = 0;
        long operation = 0;
        Span<byte> window = stackalloc byte[64];

        while (!_stop)
        {
            if (allowance == 0 && !_budget.TryClaim(out allowance))
                break;
            allowance--;
            operation++;

            int choice = random.NextInt(100);
            int page = random.NextInt(pages);
            int counter = random.NextInt(CountersPerPage);
            int delta = 1 + random.NextInt(16);
            int index = (page * CountersPerPage) + counter;
            activity.Enter(choice < 50 ? "AtomicAdd" : choice < 70 ? "Read" : choice < 85 ? "Write slot" : choice < 95 ? "span Read" : "Inspect",
                Counter(_counters, page, counter));

            if (_options.FreezeWorker && worker == 0 && operation == 100)
            {
                // Test hook: hang inside an operation, as a deadlocked thread would, until the run is torn down.
                activity.Enter("frozen by the FreezeWorker test hook", Counter(_counters, page, counter));
                _unfreeze.Wait();
                break;
            }

            if (choice < 50)
            {
                ulong address = Counter(_counters, page, counter);
                long epoch = Volatile.Read(ref _protectEpoch);
                int result;
                try
                {
                    result = _space.AtomicAdd(address, delta);
                }
                catch (MemoryAccessException e)
                {
                    CheckRejectedWrite(e, address, sizeof(int), epoch, worker, operation);
                    stats.RejectedWrites++;
                    continue;
                }

                state.Added[index] += delta;
                if (_options.InjectPhantomAdd && worker == 0 && !state.PhantomAdded)
                {
                    // Test hook: track an add that never happened, as a lost update would look.
                    state.Added[index] += 1;
                    state.PhantomAdded = true;
                }
                if (!NotBehind(result, (int)state.Added[index]) || !NotBehind(result, unchecked(state.LastSeen[index] + delta)))
                    Violate($"{At(worker, operation)}: AtomicAdd(0x{address:x}, {delta}) returned {result}, below this thread's own adds ({state.Added[index]}) or last read ({state.LastSeen[index]}) plus {delta}");
                state.LastSeen[index] = result;
                stats.AtomicAdds++;
            }
            else if (choice < 70)
            {
                ulong address = Counter(_counters, page, counter);
                int value = _space.Read<int>(address);
                CheckCounterRead(state, index, value, worker, operation, address);
                stats.Reads++;
            }
            else if (choice < 85)
            {
                ulong slot = WorkerSlot(_counters, page, worker);
                long value = SlotValue(worker, operation);
                long epoch = Volatile.Read(ref _protectEpoch);
                try
                {
                    _space.Write(slot, value);
                    state.ExpectedSlots[page] = value;
                    stats.SlotWrites++;
                }
                catch (MemoryAccessException e)
                {
                    CheckRejectedWrite(e, slot, sizeof(long), epoch, worker, operation);
                    stats.RejectedWrites++;
                }

                long back = _space.Read<long>(slot);
                if (back != state.ExpectedSlots[page])
                    Violate($"{At(worker, operation)}: slot 0x{slot:x} reads 0x{back:x} right after this thread (its only writer) left 0x{state.ExpectedSlots[page]:x}");
            }
            else if (choice < 95)
            {
                SpanRead(state, page, window, worker, operation);
                stats.SpanReads++;
            }
            else
            {
                ulong address = _counters + ((ulong)page * PagePool.PageSize);
                PageInfo info = _space.Inspect(address);
                bool granted = info.State == PageState.DeviceExclusive && _mirrors.Length > 0;
                if (!(granted || info.State is PageState.Present or PageState.NotPresent)
                    || (info.State != PageState.NotPresent && (info.Frame < 0 || info.MapCount < 1)))
                {
                    Violate($"{At(worker, operation)}: Inspect(0x{address:x}) of a mapped, private counter page gave {info}{(_mirrors.Length == 0 ? " (no device ever had it)" : string.Empty)}");
                }

                stats.Inspects++;
            }
        }
    }

    private void CheckCounterRead(WorkerState state, int index, int value, int worker, long operation, ulong address)
    {
        if (!NotBehind(value, state.LastSeen[index]) || !NotBehind(value, (int)state.Added[index]))
            Violate($"{At(worker, operation)}: counter 0x{address:x} reads {value}, below this thread's last read ({state.LastSeen[index]}) or its own adds ({state.Added[index]})");
        state.LastSeen[index] = value;
    }

    /// <summary>
    /// Reads 64 bytes across the boundary between two counter pages: the end of one page's zero region and churn slot,
    /// then the first eight counters of the next page. With a single page, reads part of its zero region.
    /// </summary>
    private void SpanRead(WorkerState state, int page, Span<byte> window, int worker, long operation)
    {
        if (_options.CounterPages < 2)
        {
            ulong zeros = _counters + ZeroOffset;
            _space.Read(zeros, window);
            if (window.IndexOfAnyExcept((byte)0) is int offset and >= 0)
                Violate($"{At(worker, operation)}: never-written byte 0x{zeros + (ulong)offset:x} is 0x{window[offset]:x2}, not zero");
            return;
        }

        int first = page % (_options.CounterPages - 1);
        ulong start = _counters + ((ulong)(first + 1) * PagePool.PageSize) - 32;
        _space.Read(start, window);
        int nonZero = window[..24].IndexOfAnyExcept((byte)0);
        if (nonZero >= 0)
            Violate($"{At(worker, operation)}: never-written byte 0x{start + (ulong)nonZero:x} is 0x{window[nonZero]:x2}, not zero");
        ReadOnlySpan<int> counters = MemoryMarshal.Cast<byte, int>(window[32..]);
        for (int c = 0; c < counters.Length; c++)
            CheckCounterRead(state, ((first + 1) * CountersPerPage) + c, counters[c], worker, operation, Counter(_counters, first + 1, c));
    }

    private void CheckRejectedWrite(MemoryAccessException e, ulong address, int size, long epochBefore, int worker, long operation)
    {
        long epochAfter = Volatile.Read(ref _protectEpoch);
        if (!e.IsWrite)
            Violate($"{At(worker, operation)}: a write to 0x{address:x} was rejected as a read ({e.Message})");
        else if (e.Address < address || e.Address >= address + (ulong)size)
            Violate($"{At(worker, operation)}: a write to 0x{address:x} was rejected naming address 0x{e.Address:x}");
        else if (epochBefore == epochAfter && (epochBefore & 1) == 0)
            Violate($"{At(worker, operation)}: a write to 0x{address:x} was rejected outside any read-only window ({e.Message})");
    }

    // Formatted only when a violation is reported: the operation loop itself allocates nothing.
    private static string At(int worker, long operation) => $"worker {worker} op {operation}";

    /// <summary>What one worker knows: its own adds per counter, its last read per counter, its last write per slot.</summary>
    private sealed class WorkerState(int pages)
    {
        public long[] Added { get; } = new long[pages * CountersPerPage];

        public int[] LastSeen { get; } = new int[pages * CountersPerPage];

        public long[] ExpectedSlots { get; } = new long[pages];

        public StressStats Stats { get; } = new();

        public bool PhantomAdded { get; set; }
    }
}
