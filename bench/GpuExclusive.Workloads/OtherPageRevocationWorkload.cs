using System.Diagnostics;

namespace GpuExclusive.Workloads;

/// <summary>
/// Revocation latency of one page — a CPU read of a device-exclusive page until its PTE is restored — with the device
/// idle, or with batches of 65536 adds running on 64 other pages of the same space: a page the kernel does not use, so
/// the revocation waits for no hold and no kernel thread (see <see cref="InUseRevocationWorkload"/> for a page the batch
/// uses). DESIGN §7 (for the kernel's own pages): median ≤ 1 ms on the CPU accelerator, ≤ 50 µs on a GPU.
/// </summary>
/// <remarks>Each revocation needs the page granted again first: <see cref="Grant"/> or <see cref="GrantInsideBatch"/>, untimed.</remarks>
internal sealed class OtherPageRevocationWorkload : IDisposable
{
    internal const int BusyPages = 64;
    internal const int BusyOps = 1 << 16;

    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private readonly DeviceMirror _mirror;
    private readonly ulong _page;
    private readonly AtomicOp[] _busyOps;
    private BackgroundBatches? _busy;
    private long _batchTicks;
    private long _stoppedBatches;

    /// <param name="device">The device (the caller's: it outlives the workload).</param>
    internal OtherPageRevocationWorkload(ExclusiveDevice device)
    {
        _pool = new PagePool(BusyPages + 64);
        _space = new AddressSpace(_pool);
        _page = _space.Map(PagePool.PageSize, Protection.ReadWrite);
        var busy = _space.Map(BusyPages * PagePool.PageSize, Protection.ReadWrite);
        _mirror = device.Mirror(_space);
        _busyOps = Batches.AddsOverPages(busy, BusyPages, BusyOps);
    }

    /// <summary>Background batches completed, by the batches running now or by the last ones stopped.</summary>
    internal long BusyBatches => _busy?.Completed ?? _stoppedBatches;

    /// <summary>
    /// Starts batches of <see cref="BusyOps"/> adds over the other pages on a thread of their own, and returns once a few
    /// have run (the first compiles and launches the kernel), having timed them.
    /// </summary>
    internal void StartBusy()
    {
        _busy = new BackgroundBatches("bench device batches", () => Batches.RequireCompleted(_mirror.Run(_busyOps), BusyOps, "background batch"));
        _busy.WaitForCompleted(1, TimeSpan.FromSeconds(30));
        var clock = Stopwatch.StartNew();
        var first = _busy.Completed;
        _busy.WaitForCompleted(first + 3, TimeSpan.FromSeconds(30));
        _batchTicks = clock.ElapsedTicks / 3; // how long one busy batch takes
    }

    /// <summary>Stops the background batches; throws if one failed.</summary>
    internal void StopBusy()
    {
        if (_busy is { } busy)
        {
            _busy = null;
            busy.Stop();
            _stoppedBatches = busy.Completed;
        }
    }

    internal void Grant() => _mirror.MakeExclusive(_page, PagePool.PageSize);

    /// <summary>
    /// <see cref="Grant"/>, then (batches running) waits until a new batch is under way — the grant may have waited for
    /// the last one — and on to a random point in its first half, so the revocation that follows has a running kernel
    /// to contend with, not a launch.
    /// </summary>
    internal void GrantInsideBatch(Random random)
    {
        Grant();
        if (_busy is null)
        {
            return;
        }

        var seen = _busy.Completed;
        var wait = Stopwatch.StartNew();
        while (_busy.Completed == seen && wait.ElapsedMilliseconds < 1000)
        {
            Thread.SpinWait(64);
        }

        var until = Stopwatch.GetTimestamp() + (long)(random.NextDouble() * _batchTicks / 2);
        while (Stopwatch.GetTimestamp() < until)
        {
            Thread.SpinWait(16);
        }
    }

    internal int Revoke() => _space.Read<int>(_page);

    public void Dispose()
    {
        _busy?.Dispose();
        _mirror.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
