using System.Diagnostics;
using static GpuExclusive.Cli.Stress.CounterLayout;

namespace GpuExclusive.Cli.Stress;

/// <summary>The device side of a stress run: one thread per device running atomic batches and grants.</summary>
internal sealed partial class StressWorkload
{
    /// <summary>In 1 of this many device ops, the op is an Add(1) on the device's dedicated permutation counter.</summary>
    private const int PermutationShare = 8;

    /// <summary>
    /// One device's thread state: its adds per counter (they join the CPU workers' in the final totals), the old values
    /// its permutation counter returned, and its counts. Written by the device thread only.
    /// </summary>
    private sealed class DeviceState(int pages)
    {
        public long[] Added { get; } = new long[pages * CountersPerPage];

        public PermutationTracker Permutation { get; } = new();

        public long Batches;
        public long Ops;
        public long Grants;
        public long GrantCalls;
        public long DeviceFaults;
        public long Replays;
    }

    private ulong PermutationCounter(int device) => _permutation + ((ulong)device * sizeof(int));

    private void DeviceLoop(int device, ThreadActivity activity)
    {
        DeviceMirror mirror = _mirrors[device];
        DeviceState state = _deviceStates[device];
        var random = SplitMix64.ForThread(_options.Seed, MaxWorkers + 1 + device);
        int pages = _options.CounterPages;
        var ops = new AtomicOp[256];
        var old = new long[256];
        var counters = new int[256];

        while (!_stop)
        {
            if (random.NextInt(100) < 15)
            {
                int first = random.NextInt(pages);
                int count = 1 + random.NextInt(Math.Min(4, pages - first));
                ulong address = _counters + ((ulong)first * PagePool.PageSize);
                activity.Enter("MakeExclusive", address);
                int granted;
                // Device ops and grants never meet a protect window: then every op must complete, which is what lets the
                // totals be exact (BatchResult counts refused ops but does not say which).
                _protectGate.EnterReadLock();
                try
                {
                    granted = mirror.MakeExclusive(address, (ulong)count * PagePool.PageSize);
                }
                finally
                {
                    _protectGate.ExitReadLock();
                }

                if (granted < 0 || granted > count)
                    Violate($"device {device}: MakeExclusive of {count} page(s) at 0x{address:x} reported {granted} granted", Invariants.DeviceBehaviour);
                state.Grants += granted;
                state.GrantCalls++;
                continue;
            }

            int length = 16 + random.NextInt(ops.Length - 15);
            for (int i = 0; i < length; i++)
            {
                if (random.NextInt(PermutationShare) == 0)
                {
                    ops[i] = new AtomicOp(PermutationCounter(device), AtomicKind.Add, 1);
                    counters[i] = -1;
                }
                else
                {
                    int page = random.NextInt(pages);
                    int counter = random.NextInt(CountersPerPage);
                    ops[i] = new AtomicOp(Counter(_counters, page, counter), AtomicKind.Add, 1 + random.NextInt(16));
                    counters[i] = (page * CountersPerPage) + counter;
                }
            }

            activity.Enter("Run (atomic batch)", ops[0].Address);
            BatchResult result;
            long started;
            _protectGate.EnterReadLock();
            try
            {
                started = Stopwatch.GetTimestamp();
                result = mirror.Run(ops.AsSpan(0, length), old);
            }
            finally
            {
                _protectGate.ExitReadLock();
            }

            _batchLatency.Record(Stopwatch.GetElapsedTime(started).TotalMicroseconds);
            if (result.Completed != length || result.NotMapped != 0 || result.PermissionDenied != 0)
            {
                Violate($"device {device} batch {state.Batches}: {length} ops on mapped writable pages gave {result}", Invariants.DeviceBehaviour);
                return;
            }

            for (int i = 0; i < length; i++)
            {
                if (counters[i] < 0)
                {
                    if (state.Permutation.Add(old[i]) is { } problem)
                        Violate($"device {device}: permutation counter 0x{PermutationCounter(device):x}: {problem}", Invariants.ExactlyOnce);
                }
                else
                {
                    state.Added[counters[i]] += ops[i].Operand;
                }
            }

            state.Batches++;
            state.Ops += length;
            state.DeviceFaults += result.DeviceFaults;
            state.Replays += result.Replays;
        }
    }
}
