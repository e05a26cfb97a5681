using System.Diagnostics;
using GpuExclusive.Workloads.Native;

namespace GpuExclusive.Workloads;

/// <summary>
/// Revocation of a page the running batch is using: a batch of <see cref="Ops"/> adds of 1 over <see cref="Pages"/>
/// pages (round-robin) runs again and again on a thread of its own, and a toucher reads one of those pages at random
/// moments. A read that finds the page device-held while a run is in progress is an in-use revocation: it waits out the
/// page's quantum (<c>Engine:DeviceQuantumMicroseconds</c>) and the kernel thread that uses it, not the launch. DESIGN
/// target: median ≤ 50 µs and p99 ≤ 1 ms on the CPU accelerator, whatever the batch size.
/// </summary>
/// <remarks>
/// <para>
/// Two ways the pages reach the device before each run (<see cref="Start"/>): granted with
/// <see cref="DeviceMirror.MakeExclusive"/> beforehand, or taken back by the CPU so that the batch faults every page in
/// itself. Either way, once a touch has taken a page, the batch faults it in again (a grant with a hold), and later
/// touches of that page in the same run revoke that grant.
/// </para>
/// <para>
/// Every touch is timed; it is an in-use revocation if <see cref="AddressSpace.Inspect"/> saw a device-exclusive entry
/// just before the read and the same run was in progress before and after it (only the toucher takes pages back, so
/// the read revoked it). Touches are made only while a run is in progress; the pause before each
/// (0–<see cref="MaxPauseMicroseconds"/> µs, <c>nanosleep</c>) spreads them over the run.
/// </para>
/// </remarks>
internal sealed class InUseRevocationWorkload : IDisposable
{
    internal const int MaxPauseMicroseconds = 200;

    // How long a touch waits for a run, or for its page to be held, before the workload declares the batch stuck.
    private static readonly TimeSpan StuckAfter = TimeSpan.FromSeconds(30);

    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private readonly DeviceMirror _mirror;
    private readonly PreparedBatch _batch;
    private readonly ulong _region;
    private readonly Random _random;
    private BackgroundBatches? _runs;
    private ulong _pending;
    private long _pendingSequence;
    private long _runsAtReset;

    /// <param name="device">The device (the caller's: it outlives the workload).</param>
    /// <param name="ops">Adds per batch.</param>
    /// <param name="pages">Pages the batch spreads them over, and the toucher picks from.</param>
    /// <param name="seed">Seeds the toucher's pauses and pages.</param>
    internal InUseRevocationWorkload(ExclusiveDevice device, int ops, int pages, int seed = 12345)
    {
        Ops = ops;
        Pages = pages;
        _random = new Random(seed);
        _pool = new PagePool(pages + 64);
        _space = new AddressSpace(_pool);
        _region = _space.Map((ulong)pages * PagePool.PageSize, Protection.ReadWrite);
        for (var page = 0; page < pages; page++)
        {
            _space.Write(PageAddress(page), 0);
        }

        _mirror = device.Mirror(_space);
        // Prepared: a run of 20 M ops would otherwise spend a second translating them before its launch.
        _batch = _mirror.Prepare(Batches.AddsOverPages(_region, pages, ops));
    }

    internal int Ops { get; }

    internal int Pages { get; }

    /// <summary>Touches since <see cref="ResetCounts"/> (each made while a run was in progress).</summary>
    internal long Touches { get; private set; }

    /// <summary>Of <see cref="Touches"/>, those that found the page device-held and saw their run go on: in-use revocations.</summary>
    internal long FoundHeld { get; private set; }

    /// <summary>Runs completed since <see cref="ResetCounts"/> (by <see cref="Stop"/>, the one it waited for included).</summary>
    internal long RunsCompleted => (_runs?.Completed ?? 0) - _runsAtReset;

    /// <summary>The median run completed since <see cref="ResetCounts"/>, in ns (0 before one has).</summary>
    internal double MedianRunNanoseconds => _runs?.MedianRunNanoseconds() ?? 0;

    /// <summary>Device faults and replays of the runs completed since <see cref="ResetCounts"/>.</summary>
    internal (long DeviceFaults, long Replays) FaultsAndReplays => _runs?.FaultsAndReplays() ?? default;

    /// <summary>Starts the runs: each after a grant of every page (<paramref name="granted"/>), or after the CPU took them all back.</summary>
    internal void Start(bool granted)
    {
        _runs?.Dispose();
        Action beforeEach = granted ? GrantAll : TakeAllBack;
        _runs = new BackgroundBatches("bench in-use batches", () => Batches.RequireCompleted(_mirror.Run(_batch), Ops, "batch"), beforeEach);
        ResetCounts();
    }

    /// <summary>Stops the runs after the one in progress (the counts stay readable); throws if one failed.</summary>
    internal void Stop() => _runs?.Stop();

    internal void ResetCounts()
    {
        Touches = 0;
        FoundHeld = 0;
        _runsAtReset = _runs?.Completed ?? 0;
        _runs?.ResetFigures();
    }

    /// <summary>
    /// One touch at a random moment of a run: pauses, reads a random page of the batch, and returns how long the read
    /// took and whether it was an in-use revocation (see the remarks).
    /// </summary>
    internal (double Nanoseconds, bool FoundHeld) TouchAtRandomMoment()
    {
        var runs = Background();
        PreciseSleep.Microseconds(_random.Next(MaxPauseMicroseconds + 1));
        var address = PageAddress(_random.Next(Pages));
        var before = runs.WaitForRun(StuckAfter);
        var held = IsHeld(address);
        var start = Stopwatch.GetTimestamp();
        _ = _space.Read<int>(address);
        var stop = Stopwatch.GetTimestamp();
        var found = held && runs.Sequence == before;
        Count(found);
        return (PageTouches.Nanoseconds(stop - start), found);
    }

    /// <summary>
    /// The untimed half of a touch that is known to revoke (for a timer around <see cref="TouchPrepared"/> alone):
    /// pauses, picks a random page, and waits until a run is in progress with that page device-held.
    /// </summary>
    /// <exception cref="TimeoutException">The page was never device-held inside a run for 30 s: the batch is stuck.</exception>
    internal void PrepareHeldTouch()
    {
        var runs = Background();
        PreciseSleep.Microseconds(_random.Next(MaxPauseMicroseconds + 1));
        _pending = PageAddress(_random.Next(Pages));
        var clock = Stopwatch.StartNew();
        while (true)
        {
            _pendingSequence = runs.WaitForRun(StuckAfter);
            if (IsHeld(_pending) && runs.Sequence == _pendingSequence)
            {
                return;
            }

            if (clock.Elapsed > StuckAfter)
            {
                throw new TimeoutException($"page 0x{_pending:x} was not device-held inside a run for {StuckAfter.TotalSeconds:0} s ({RunsCompleted} runs)");
            }

            Thread.SpinWait(64);
        }
    }

    /// <summary>Whether the page <see cref="PrepareHeldTouch"/> picked is device-held now (what it waited for).</summary>
    internal bool PreparedPageHeld => IsHeld(_pending);

    /// <summary>The read <see cref="PrepareHeldTouch"/> prepared: an in-use revocation, unless its run ended meanwhile.</summary>
    internal int TouchPrepared() => _space.Read<int>(_pending);

    /// <summary>Counts the touch just made: an in-use revocation if its run is still the one in progress.</summary>
    internal void CountPreparedTouch() => Count(Background().Sequence == _pendingSequence);

    private void Count(bool foundHeld)
    {
        Touches++;
        if (foundHeld)
        {
            FoundHeld++;
        }
    }

    private BackgroundBatches Background() => _runs ?? throw new InvalidOperationException("Start the runs first");

    private bool IsHeld(ulong address) => _space.Inspect(address).State == PageState.DeviceExclusive;

    private ulong PageAddress(int page) => _region + ((ulong)page * PagePool.PageSize);

    private void GrantAll() => _mirror.MakeExclusive(_region, (ulong)Pages * PagePool.PageSize);

    /// <summary>A CPU read of every page: each one the device holds is revoked, so the next run faults it in itself.</summary>
    private void TakeAllBack()
    {
        for (var page = 0; page < Pages; page++)
        {
            _ = _space.Read<int>(PageAddress(page));
        }
    }

    public void Dispose()
    {
        _runs?.Dispose();
        _batch.Dispose();
        _mirror.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
