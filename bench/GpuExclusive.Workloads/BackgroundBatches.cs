using System.Diagnostics;

namespace GpuExclusive.Workloads;

/// <summary>A thread that runs a device batch again and again until stopped: the running kernel of the revocation workloads.</summary>
internal sealed class BackgroundBatches : IDisposable
{
    private readonly Func<BatchResult> _run;
    private readonly Action? _beforeEach;
    private readonly Thread _thread;
    private volatile bool _stop;
    private long _completed;
    private Exception? _failure;

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

    /// <summary>Runs completed so far.</summary>
    internal long Completed => Interlocked.Read(ref _completed);

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
                _run();
                Interlocked.Increment(ref _completed);
            }
        }
        catch (Exception e)
        {
            Volatile.Write(ref _failure, e);
        }
    }
}
