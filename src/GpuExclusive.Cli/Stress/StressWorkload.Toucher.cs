using System.Diagnostics;
using static GpuExclusive.Cli.Stress.CounterLayout;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The toucher thread, run when there are devices: CPU touches at random moments, so that device-held pages are revoked
/// while batches use them.
/// </summary>
internal sealed partial class StressWorkload
{
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
}
