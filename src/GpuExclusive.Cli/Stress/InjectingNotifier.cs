using System.Diagnostics;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// Fault injection inside the engine's invalidations (<c>--inject</c>): a notifier whose
/// <see cref="InvalidateStart"/> sometimes waits before the PTEs change. It runs with the mmap lock held and, for
/// <see cref="NotifierEvent.Exclusive"/> and a restore's <see cref="NotifierEvent.Clear"/>, the frame's page lock, so a
/// longer wait there is a page-lock holder that lingers: the grant or revocation racing it must wait, not fail.
/// </summary>
/// <remarks>
/// Whether and how long to wait is drawn from a per-thread generator seeded by the run's seed, so a thread that
/// invalidates the same sequence of ranges gets the same sequence of delays; the schedule of operations across threads
/// still depends on timing.
/// </remarks>
internal sealed class InjectingNotifier(int seed) : MmuNotifier
{
    private readonly ThreadLocal<Box> _random = new(() => new Box(SplitMix64.ForThread(seed, 0x10000 + Environment.CurrentManagedThreadId)));
    private long _delays;
    private long _lingers;

    /// <summary>Short delays injected into invalidations.</summary>
    public long Delays => Interlocked.Read(ref _delays);

    /// <summary>Long delays injected while a page lock is held (grants and restores).</summary>
    public long Lingers => Interlocked.Read(ref _lingers);

    protected internal override void InvalidateStart(in NotifierRange range)
    {
        ref SplitMix64 random = ref _random.Value!.Random;
        int draw = random.NextInt(100);
        bool pageLocked = range.Event is NotifierEvent.Exclusive or NotifierEvent.Clear;
        if (pageLocked && draw < 10)
        {
            // A page-lock holder that lingers: up to 2 ms, sometimes giving the core away.
            Interlocked.Increment(ref _lingers);
            if (draw < 3)
                Thread.Sleep(1);
            else
                Spin(100 + random.NextInt(1900));
        }
        else if (draw < 20)
        {
            Interlocked.Increment(ref _delays);
            Spin(random.NextInt(50));
        }
    }

    private static void Spin(int microseconds)
    {
        long until = Stopwatch.GetTimestamp() + (microseconds * Stopwatch.Frequency / 1_000_000);
        while (Stopwatch.GetTimestamp() < until)
            Thread.SpinWait(20);
    }

    private sealed class Box(SplitMix64 random)
    {
        public SplitMix64 Random = random;
    }
}
