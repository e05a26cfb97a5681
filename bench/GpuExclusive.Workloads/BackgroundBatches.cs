using System.Diagnostics;

namespace GpuExclusive.Workloads;

/// <summary>
/// A thread that runs a device batch again and again until stopped: the running kernel of the revocation workloads.
/// <see cref="Sequence"/> tells a touch whether a run was in progress around it.
/// </summary>
internal sealed class BackgroundBatches : IDisposable
{
    private readonly Func<BatchResult> _run;
    private readonly Action? _beforeEach;
    private readonly Thread _thread;
    private volatile bool _stop;
    // Two steps per run: odd while a run is in progress, even between runs.
    private long _sequence;
    private Exception? _failure;
    // Each completed run's duration in Stopwatch ticks, and the device faults and replays of those runs (guarded by _runTicks).
    private readonly List<long> _runTicks = [];
    private long _deviceFaults;
    private long _replays;

    /// <param name="name">The thread's name.</param>
    /// <param name="run">One run of the batch (it should throw if the batch did not complete).</param>
    /// <param name="beforeEach">What to do before each run, outside it (a grant, taking pages back).</param>
    internal BackgroundBatches(string name, Func<BatchResult> run, Action? beforeEach = null)
    {
        _run = run;
        _beforeEach = beforeEach;
        _thread = new Thread(Loop) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Odd while a run is in progress; it grows by two each run.</summary>
    internal long Sequence => Volatile.Read(ref _sequence);

    /// <summary>Runs completed so far.</summary>
    internal long Completed => Sequence / 2;

    internal static bool InRun(long sequence) => (sequence & 1) != 0;

    /// <summary>The median duration of the runs completed so far, in ns (0 before the first).</summary>
    internal double MedianRunNanoseconds()
    {
        lock (_runTicks)
        {
            if (_runTicks.Count == 0)
            {
                return 0;
            }

            long[] sorted = [.. _runTicks];
            Array.Sort(sorted);
            return PageTouches.Nanoseconds(sorted[sorted.Length / 2]);
        }
    }

    /// <summary>Device faults and replays of the runs completed so far (<see cref="BatchResult"/>'s, summed).</summary>
    internal (long DeviceFaults, long Replays) FaultsAndReplays()
    {
        lock (_runTicks)
        {
            return (_deviceFaults, _replays);
        }
    }

    /// <summary>Forgets the durations, faults and replays recorded so far (a measurement starts).</summary>
    internal void ResetFigures()
    {
        lock (_runTicks)
        {
            _runTicks.Clear();
            _deviceFaults = 0;
            _replays = 0;
        }
    }

    /// <summary>Waits until <paramref name="runs"/> runs have completed in all.</summary>
    /// <exception cref="InvalidOperationException">The batches failed.</exception>
    /// <exception cref="TimeoutException">They did not within <paramref name="timeout"/>.</exception>
    internal void WaitForCompleted(long runs, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (Completed < runs)
        {
            ThrowIfFailed();
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"{_thread.Name}: {Completed} of {runs} runs completed in {timeout.TotalSeconds:0} s");
            }

            Thread.Sleep(1);
        }
    }

    /// <summary>Waits until a run is in progress and returns <see cref="Sequence"/> then.</summary>
    /// <exception cref="InvalidOperationException">The batches failed.</exception>
    /// <exception cref="TimeoutException">No run started within <paramref name="timeout"/>.</exception>
    internal long WaitForRun(TimeSpan timeout)
    {
        var sequence = Sequence;
        if (InRun(sequence))
        {
            return sequence;
        }

        var clock = Stopwatch.StartNew();
        var spin = default(SpinWait);
        while (!InRun(sequence = Sequence))
        {
            ThrowIfFailed();
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"{_thread.Name}: no run started within {timeout.TotalSeconds:0} s");
            }

            spin.SpinOnce(sleep1Threshold: -1);
        }

        return sequence;
    }

    /// <exception cref="InvalidOperationException">A run threw: the batches stopped there.</exception>
    internal void ThrowIfFailed()
    {
        if (Volatile.Read(ref _failure) is { } failure)
        {
            throw new InvalidOperationException($"{_thread.Name} failed: {failure.Message}", failure);
        }
    }

    /// <summary>Stops after the run in progress and waits for it; throws if a run failed.</summary>
    internal void Stop()
    {
        _stop = true;
        _thread.Join();
        ThrowIfFailed();
    }

    /// <summary>Stops without throwing (a failure was reported by <see cref="Stop"/> or is moot).</summary>
    public void Dispose()
    {
        _stop = true;
        _thread.Join();
    }

    private void Loop()
    {
        try
        {
            while (!_stop)
            {
                _beforeEach?.Invoke();
                Interlocked.Increment(ref _sequence);
                var start = Stopwatch.GetTimestamp();
                BatchResult result;
                try
                {
                    result = _run();
                }
                finally
                {
                    Interlocked.Increment(ref _sequence);
                }

                var ticks = Stopwatch.GetTimestamp() - start;
                lock (_runTicks)
                {
                    _runTicks.Add(ticks);
                    _deviceFaults += result.DeviceFaults;
                    _replays += result.Replays;
                }
            }
        }
        catch (Exception e)
        {
            Volatile.Write(ref _failure, e);
        }
    }
}
