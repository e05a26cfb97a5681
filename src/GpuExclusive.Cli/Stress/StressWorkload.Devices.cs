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

    /// <summary>
    /// Touches device-held pages from the CPU at random times (revocations, some while a kernel runs) and times the
    /// touches that found a device-exclusive entry. With <c>--inject</c> it also runs the invariant checker at random
    /// moments, stopping kernels at unpredictable points of their batches.
    /// </summary>
    private void TouchLoop(ThreadActivity activity)
    {
        var random = SplitMix64.ForThread(_options.Seed, MaxWorkers + 16);
        int pages = _options.CounterPages;
        while (!_stop)
        {
            int page = random.NextInt(pages + 1);
            ulong address = page == pages ? _permutation : Counter(_counters, page, random.NextInt(CountersPerPage));
            activity.Enter("Inspect + touch", address);
            bool held = _space.Inspect(address).State == PageState.DeviceExclusive;
            long started = Stopwatch.GetTimestamp();
            _ = _space.Read<int>(address);
            if (held)
            {
                _revocationLatency.Record(Stopwatch.GetElapsedTime(started).TotalMicroseconds);
                Interlocked.Increment(ref _touchRevocations);
            }

            if (_options.Inject && random.NextInt(64) == 0)
            {
                activity.Enter("InvariantChecker (injected)");
                RunInvariantChecker();
            }

            activity.Enter("sleeping");
            if (_options.Inject)
            {
                int pause = random.NextInt(4);
                if (pause == 0)
                    Thread.Yield();
                else
                    Thread.Sleep(pause - 1);
            }
            else
            {
                Thread.Sleep(2);
            }
        }
    }

    /// <summary>
    /// Pool pressure (<c>--inject</c>): fills its own pages, has a device take them, discards them under load and checks
    /// that both the CPU and the device then see fresh zeros, while the pool is as small as the run allows.
    /// </summary>
    private void PressureLoop(ThreadActivity activity)
    {
        var random = SplitMix64.ForThread(_options.Seed, MaxWorkers + 17);
        const int pages = StressOptions.PressurePages;
        Span<byte> probe = stackalloc byte[sizeof(long)];
        long pattern = 0x9E55_0000L << 32;
        while (!_stop)
        {
            int first = random.NextInt(pages);
            int count = 1 + random.NextInt(pages - first);
            ulong start = _pressure + ((ulong)first * PagePool.PageSize);
            ulong length = (ulong)count * PagePool.PageSize;
            activity.Enter("pressure: fill", start);
            for (int p = first; p < first + count; p++)
                _space.Write(_pressure + ((ulong)p * PagePool.PageSize), ++pattern);

            if (_mirrors.Length > 0)
            {
                DeviceMirror mirror = _mirrors[random.NextInt(_mirrors.Length)];
                activity.Enter("pressure: MakeExclusive", start);
                mirror.MakeExclusive(start, length);
                activity.Enter("pressure: device read", start);
                if (mirror.Read(start, probe) != DeviceStatus.Ok || BitConverter.ToInt64(probe) != pattern - count + 1)
                    Violate($"pressure: the device reads 0x{BitConverter.ToInt64(probe):x} at 0x{start:x}, the CPU wrote 0x{pattern - count + 1:x}", Invariants.DeviceBehaviour);
            }

            activity.Enter("pressure: Discard", start);
            _space.Discard(start, length);
            activity.Enter("pressure: check zeros", start);
            for (int p = first; p < first + count; p++)
            {
                ulong address = _pressure + ((ulong)p * PagePool.PageSize);
                long value = _space.Read<long>(address + PagePool.PageSize - sizeof(long));
                if (value != 0)
                    Violate($"pressure: page 0x{address:x} reads 0x{value:x} after Discard, not zero", Invariants.CpuConsistency);
            }

            if (_mirrors.Length > 0)
            {
                DeviceMirror mirror = _mirrors[random.NextInt(_mirrors.Length)];
                if (mirror.Read(start, probe) != DeviceStatus.Ok || BitConverter.ToInt64(probe) != 0)
                    Violate($"pressure: the device reads 0x{BitConverter.ToInt64(probe):x} at 0x{start:x} after Discard, not zero", Invariants.DeviceBehaviour);
            }

            Interlocked.Increment(ref _pressureDiscards);
            activity.Enter("sleeping");
            Thread.Sleep(random.NextInt(2));
        }
    }

    /// <summary>Runs <see cref="GpuExclusive.Diagnostics.InvariantChecker"/> over the pool (every mmap lock, briefly).</summary>
    private void RunInvariantChecker()
    {
        List<string> found = GpuExclusive.Diagnostics.InvariantChecker.Collect(_pool);
        Interlocked.Increment(ref _invariantChecks);
        if (found.Count > 0)
            Violate($"InvariantChecker: {found[0]}{(found.Count > 1 ? $" (and {found.Count - 1} more)" : string.Empty)}", Invariants.FrameAccounting);
    }

    /// <summary>Runs the invariant checker every <see cref="CheckerPeriod"/>.</summary>
    private void CheckerLoop(ThreadActivity activity)
    {
        while (!_stop)
        {
            activity.Enter("sleeping");
            _stopSignal.Wait(CheckerPeriod);
            if (_stop)
                break;
            activity.Enter("InvariantChecker");
            RunInvariantChecker();
        }
    }

    /// <summary>
    /// Fires when a thread has been inside one operation for longer than <c>--watchdog-seconds</c>: records what every
    /// thread is doing and stops the run.
    /// </summary>
    private void WatchdogLoop()
    {
        var limit = TimeSpan.FromSeconds(_options.WatchdogSeconds);
        TimeSpan period = TimeSpan.FromMilliseconds(Math.Clamp(limit.TotalMilliseconds / 4, 50, 1000));
        while (!_watchdogDone.Wait(period))
        {
            ThreadActivity? stuck = _activities.FirstOrDefault(a => !a.Finished && a.Busy > limit);
            if (stuck is null)
                continue;
            var dump = new List<string> { $"no progress for {limit.TotalSeconds:0} s in {stuck.Thread}; every thread:" };
            dump.AddRange(_activities.Select(a => "  " + a.Describe()));
            WatchdogDump = dump;
            Violate($"watchdog: {stuck.Describe()}", Invariants.Progress);
            return;
        }
    }
}
