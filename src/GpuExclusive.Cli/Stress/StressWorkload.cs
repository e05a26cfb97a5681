using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The stress workload: worker threads doing random AtomicAdd / Read / Write on counter pages, one churn thread
/// forking, protecting, clearing soft-dirty, locking, discarding and remapping, and per device a thread running atomic
/// batches and grants on the same counters. Every successful add is tracked per thread, so at the end each counter must
/// equal the sum of its CPU and device adds exactly; each device's dedicated counter must have returned a permutation;
/// the invariant checker runs every <see cref="CheckerPeriod"/>; after disposal every frame must be back in the pool.
/// </summary>
/// <remarks>
/// Threading: each worker owns its <see cref="WorkerState"/>, each device thread its <see cref="DeviceState"/>; the
/// churn thread owns the scratch region and the churn slots; the pressure thread owns the pressure pages. Nothing is
/// shared between threads except the engine itself, <see cref="_stop"/>, <see cref="_protectEpoch"/>,
/// <see cref="_protectGate"/>, the operation budget, the activities and the violation log. The final checks run after
/// every thread has been joined.
/// <para>
/// This file holds the state and the run's lifetime. Each thread's loop and checks are in a partial file named after
/// it (Workers, Churn with Fork, Devices, Toucher, Pressure, Checker, Watchdog), and the checks that need every thread
/// stopped are in FinalChecks; the state stays here, where the threading rules above can be read against it.
/// </para>
/// </remarks>
internal sealed partial class StressWorkload : IDisposable
{
    private readonly StressOptions _options;
    private readonly ILogger _logger;
    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private readonly ulong _counters;
    private readonly ulong _counterBytes;
    private readonly ulong _scratchBytes;
    private readonly ulong _permutation;
    private readonly ulong _pressure;
    private readonly WorkerState[] _workers;
    private readonly DeviceState[] _deviceStates;
    private readonly DeviceMirror[] _mirrors;
    private readonly StressStats _churnStats = new();
    private readonly OperationBudget _budget;
    private readonly Thread[] _threads;
    private readonly ThreadActivity[] _activities;
    private readonly Thread _watchdog;
    private readonly Stopwatch _clock = new();
    private readonly EngineCounters _engineCounters = new();
    private readonly LatencyRecorder _batchLatency = new();
    private readonly LatencyRecorder _revocationLatency = new();
    private readonly ManualResetEventSlim _stopSignal = new();
    private readonly ManualResetEventSlim _watchdogDone = new();
    private readonly ManualResetEventSlim _unfreeze = new();
    private readonly InjectingNotifier? _injector;
    private readonly IDisposable? _injectorRegistration;

    // Device batches and grants hold it for reading, the churn thread's protect windows for writing: device ops never
    // meet a read-only counter page, so each must complete and the totals stay exact.
    private readonly ReaderWriterLockSlim _protectGate = new(LockRecursionPolicy.NoRecursion);

    // Owned by the churn thread (read by the final checks after it has been joined).
    private readonly long[] _churnSlots;
    private readonly long[] _scratchPatterns;
    private ulong _scratch;
    private long _churnSequence;

    private volatile bool _stop;
    private int _workersRunning;
    private long _invariantChecks;
    private long _touchRevocations;
    private long _pressureDiscards;
    private long _childPagesInspected;

    // Even: counters are read-write. The churn thread makes it odd before protecting any counter page read-only and
    // even again after restoring read-write, so a worker whose write was rejected can prove a window overlapped it.
    private long _protectEpoch;

    private bool _spaceDisposed;
    private bool _poolDisposed;

    public StressWorkload(StressOptions options, long poolPages, ILoggerFactory loggerFactory, IReadOnlyList<ExclusiveDevice>? devices = null)
    {
        devices ??= [];
        _options = options;
        _logger = loggerFactory.CreateLogger<StressWorkload>();
        _counterBytes = (ulong)options.CounterPages * PagePool.PageSize;
        _scratchBytes = (ulong)StressOptions.ScratchPages * PagePool.PageSize;
        _churnSlots = new long[options.CounterPages];
        _scratchPatterns = new long[StressOptions.ScratchPages];
        _mirrors = new DeviceMirror[devices.Count];

        _pool = new PagePool(poolPages, loggerFactory);
        try
        {
            _space = new AddressSpace(_pool, loggerFactory);
            _counters = _space.Map(_counterBytes, Protection.ReadWrite);
            _scratch = _space.Map(_scratchBytes, Protection.ReadWrite);
            _permutation = _space.Map(PagePool.PageSize, Protection.ReadWrite);
            if (options.Inject)
            {
                _pressure = _space.Map(StressOptions.PressurePages * PagePool.PageSize, Protection.ReadWrite);
                _injector = new InjectingNotifier(options.Seed);
                _injectorRegistration = _space.RegisterNotifier(_injector);
            }

            for (int d = 0; d < devices.Count; d++)
                _mirrors[d] = devices[d].Mirror(_space);
        }
        catch
        {
            foreach (DeviceMirror? mirror in _mirrors)
                mirror?.Dispose();
            _injectorRegistration?.Dispose();
            _space?.Dispose();
            _pool.Dispose();
            _engineCounters.Dispose();
            throw;
        }

        _budget = new OperationBudget(options.MaxOperations);
        _workers = new WorkerState[options.CpuThreads];
        _deviceStates = new DeviceState[devices.Count];
        var threads = new List<Thread>();
        var activities = new List<ThreadActivity>();
        void Add(string name, Action<ThreadActivity> body)
        {
            var activity = new ThreadActivity(name);
            activities.Add(activity);
            threads.Add(new Thread(() =>
            {
                try
                {
                    Guard(name, () => body(activity));
                }
                finally
                {
                    activity.Finish();
                }
            }) { IsBackground = true, Name = $"gpux-{name.Replace(' ', '-')}" });
        }

        for (int i = 0; i < options.CpuThreads; i++)
        {
            int worker = i;
            _workers[i] = new WorkerState(options.CounterPages);
            Add($"worker {worker}", activity => WorkerLoop(worker, activity));
        }

        Add("churn", ChurnLoop);
        for (int d = 0; d < devices.Count; d++)
        {
            int device = d;
            _deviceStates[d] = new DeviceState(options.CounterPages);
            Add($"device {device}", activity => DeviceLoop(device, activity));
        }

        Add("checker", CheckerLoop);
        if (devices.Count > 0)
            Add("toucher", TouchLoop);
        if (options.Inject)
            Add("pressure", PressureLoop);
        _threads = [.. threads];
        _activities = [.. activities];
        _watchdog = new Thread(() => Guard("watchdog", WatchdogLoop)) { IsBackground = true, Name = "gpux-watchdog" };
    }

    public ViolationLog Violations { get; } = new();

    public TimeSpan Elapsed => _clock.Elapsed;

    public long PoolCapacity => _pool.Capacity;

    /// <summary>Free frames after the address space was disposed; must equal <see cref="PoolCapacity"/>.</summary>
    public long FreePagesAfterDispose { get; private set; } = -1;

    public bool StopRequested => _stop;

    /// <summary>What every thread was doing when the watchdog fired (first line: which thread and how long), or null.</summary>
    public IReadOnlyList<string>? WatchdogDump { get; private set; }

    /// <summary>Full invariant-checker passes so far.</summary>
    public long InvariantChecks => Interlocked.Read(ref _invariantChecks);

    /// <summary>Pages of forked children inspected for device-exclusive entries.</summary>
    public long ChildPagesInspected => Interlocked.Read(ref _childPagesInspected);

    /// <summary>Final checks done (the totals and exactly-once checks, which run after the threads stop).</summary>
    public bool FinalChecksRan { get; private set; }

    public void Start()
    {
        StressLog.RunStarted(_logger, _options.Seed, _options.CpuThreads, _options.CounterPages, _pool.Capacity);
        _workersRunning = _options.CpuThreads;
        _clock.Start();
        foreach (Thread thread in _threads)
            thread.Start();
        _watchdog.Start();
    }

    public void RequestStop()
    {
        _stop = true;
        _stopSignal.Set();
    }

    /// <summary>Waits up to <paramref name="timeout"/> for every thread to finish; true once they all have.</summary>
    public bool WaitForThreads(TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        foreach (Thread thread in _threads)
        {
            if (thread.ThreadState.HasFlag(System.Threading.ThreadState.Unstarted))
                continue; // Start threw before it: nothing to wait for (Join would throw)

            TimeSpan left = timeout - deadline.Elapsed;
            if (!thread.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero))
                return false;
        }

        return true;
    }

    /// <summary>Counts so far (racy while running, exact after <see cref="Finish"/>).</summary>
    public StressStats Snapshot() => StressStats.Sum(_workers.Select(w => w.Stats).Append(_churnStats));

    /// <summary>Device and engine counts so far (racy while running, exact after <see cref="Finish"/>).</summary>
    public DeviceTotals DeviceSnapshot()
    {
        long batches = 0, ops = 0, grants = 0, faults = 0, replays = 0, permutation = 0;
        foreach (DeviceState state in _deviceStates)
        {
            batches += Volatile.Read(ref state.Batches);
            ops += Volatile.Read(ref state.Ops);
            grants += Volatile.Read(ref state.Grants);
            faults += Volatile.Read(ref state.DeviceFaults);
            replays += Volatile.Read(ref state.Replays);
            permutation += state.Permutation.Count;
        }

        return new DeviceTotals(
            _mirrors.Length, batches, ops, permutation, grants, faults, replays,
            _engineCounters.Grants, _engineCounters.Revocations, _engineCounters.DeviceFaults, _engineCounters.Replays,
            Interlocked.Read(ref _touchRevocations), Interlocked.Read(ref _pressureDiscards),
            _injector?.Delays ?? 0, _injector?.Lingers ?? 0,
            _batchLatency.Summarize(), _revocationLatency.Summarize());
    }

    /// <summary>
    /// Stops every thread, checks the final totals, disposes the space and checks that every frame came back. After the
    /// watchdog fired, waits only a bounded time for the threads; if one stays stuck, returns without final checks and
    /// leaves the engine as it is (the process is about to exit with code 3).
    /// </summary>
    public StressStats Finish()
    {
        RequestStop();
        if (WatchdogDump is not null)
        {
            _unfreeze.Set();
            if (!WaitForThreads(TimeSpan.FromSeconds(2)))
            {
                _clock.Stop();
                return Snapshot();
            }
        }

        foreach (Thread thread in _threads)
            thread.Join();
        _watchdogDone.Set();
        _watchdog.Join();
        _clock.Stop();
        StressStats totals = Snapshot();
        StressLog.RunStopped(_logger, _clock.Elapsed, totals.WorkerOperations, totals.ChurnOperations);

        if (WatchdogDump is null)
            RunFinalChecks();

        foreach (DeviceMirror mirror in _mirrors)
            mirror.Dispose();
        _injectorRegistration?.Dispose();
        _space.Dispose();
        _spaceDisposed = true;
        CheckFramesReturned();
        return totals;
    }

    public void Dispose()
    {
        // With threads still running only if Start threw half-way or the watchdog found one stuck; a stuck thread is
        // left alone (joining it would hang the exit that reports it).
        RequestStop();
        _unfreeze.Set();
        _watchdogDone.Set();
        if (!WaitForThreads(TimeSpan.FromSeconds(2)))
            return;

        if (!_spaceDisposed)
        {
            _spaceDisposed = true;
            foreach (DeviceMirror? mirror in _mirrors)
                mirror?.Dispose();
            _injectorRegistration?.Dispose();
            _space.Dispose();
        }

        if (!_poolDisposed)
        {
            _poolDisposed = true;
            _pool.Dispose();
        }

        _engineCounters.Dispose();
    }

    private void Guard(string thread, Action body)
    {
        try
        {
            body();
        }
        catch (DeviceFailedException e)
        {
            // A device that stops answering is an error the engine reports within its deadline, never a hang: one line.
            StressLog.UnexpectedException(_logger, thread, e);
            Violate($"{thread}: device '{e.DeviceName}' stopped answering (no progress for {e.Timeout.TotalMilliseconds:0} ms while the host waited for {e.WaitingFor}) and was declared failed", Invariants.Progress);
        }
        catch (Exception e)
        {
            StressLog.UnexpectedException(_logger, thread, e);
            Violate($"{thread}: unexpected {e.GetType().Name}: {e.Message}");
        }
    }

    private void Violate(string message, string invariant = Invariants.CpuConsistency)
    {
        if (Violations.Report(message, invariant))
            StressLog.Violation(_logger, message);
        RequestStop();
    }
}
