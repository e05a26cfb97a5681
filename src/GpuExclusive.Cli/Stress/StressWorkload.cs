using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using static GpuExclusive.Cli.Stress.CounterLayout;

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
/// </remarks>
internal sealed partial class StressWorkload : IDisposable
{
    /// <summary>How often the checker thread runs the full invariant checker (it takes every mmap lock).</summary>
    private static readonly TimeSpan CheckerPeriod = TimeSpan.FromMilliseconds(250);

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
    private long _operationsClaimed;
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
        {
            Guard("final check", CheckFinalState);
            Guard("final exactly-once check", CheckPermutations);
            Guard("final invariant check", RunInvariantChecker);
            FinalChecksRan = true;
        }

        foreach (DeviceMirror mirror in _mirrors)
            mirror.Dispose();
        _injectorRegistration?.Dispose();
        _space.Dispose();
        _spaceDisposed = true;
        FreePagesAfterDispose = _pool.FreePages;
        if (FreePagesAfterDispose != _pool.Capacity)
            Violate($"after disposing the address space the pool has {FreePagesAfterDispose} free frames of {_pool.Capacity}: {_pool.Capacity - FreePagesAfterDispose} frames leaked", Invariants.FramesReturned);
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

    private void ChurnLoop(ThreadActivity activity)
    {
        var random = SplitMix64.ForThread(_options.Seed, MaxWorkers);
        while (!_stop)
        {
            switch (random.NextInt(6))
            {
                case 0: activity.Enter("Fork + check child"); ForkAndCheck(ref random); break;
                case 1: activity.Enter("Protect window"); ProtectWindow(ref random); break;
                case 2: activity.Enter("ClearSoftDirty"); ClearSoftDirtyAndCheck(ref random); break;
                case 3: activity.Enter("Lock/Unlock"); LockAndUnlock(ref random); break;
                case 4: activity.Enter("Discard scratch"); DiscardScratch(ref random); break;
                default: activity.Enter("Unmap/Map scratch"); RemapScratch(ref random); break;
            }

            // Leave the workers most of the machine: churn operations are heavy and CI has two cores.
            activity.Enter("sleeping");
            Thread.Sleep(1);
        }
    }

    private long NextChurnValue() => unchecked((0x0C4E_0000L << 32) | ++_churnSequence);

    /// <summary>
    /// Forks, and checks that the child is a snapshot: between what the parent showed before and after the fork,
    /// stable while the parent keeps changing, and isolated from the parent by copy-on-write in both directions.
    /// </summary>
    private void ForkAndCheck(ref SplitMix64 random)
    {
        int page = random.NextInt(_options.CounterPages);
        bool grandchild = random.NextInt(4) == 0;
        ulong counters = Counter(_counters, page, 0);
        ulong churnSlot = ChurnSlot(_counters, page);
        Span<int> before = stackalloc int[CountersPerPage];
        Span<int> snapshot = stackalloc int[CountersPerPage];
        Span<int> after = stackalloc int[CountersPerPage];
        Span<int> again = stackalloc int[CountersPerPage];

        _space.Read(counters, MemoryMarshal.AsBytes(before));
        using (AddressSpace child = _space.Fork())
        {
            CheckChildHoldsNothingExclusive(child);
            child.Read(counters, MemoryMarshal.AsBytes(snapshot));
            _space.Read(counters, MemoryMarshal.AsBytes(after));
            for (int c = 0; c < CountersPerPage; c++)
            {
                if (!NotBehind(snapshot[c], before[c]) || !NotBehind(after[c], snapshot[c]))
                    Violate($"fork: counter 0x{Counter(_counters, page, c):x} was {before[c]} before the fork, {snapshot[c]} in the child, {after[c]} in the parent after");
            }

            for (int w = 0; w < _options.CpuThreads; w++)
            {
                long slot = child.Read<long>(WorkerSlot(_counters, page, w));
                if (slot != 0 && SlotOwner(slot) != w)
                    Violate($"fork: the child's copy of worker {w}'s slot on page {page} holds 0x{slot:x}, written by no such worker");
            }

            long childChurn = child.Read<long>(churnSlot);
            if (childChurn != _churnSlots[page])
                Violate($"fork: the child's churn slot 0x{churnSlot:x} holds 0x{childChurn:x}, the parent had 0x{_churnSlots[page]:x}");

            // Copy-on-write, child to parent.
            long childValue = NextChurnValue();
            child.Write(churnSlot, childValue);
            long parentChurn = _space.Read<long>(churnSlot);
            if (parentChurn != _churnSlots[page])
                Violate($"fork: the child's write to 0x{churnSlot:x} leaked into the parent (0x{parentChurn:x})");

            // Copy-on-write, parent to child.
            long parentValue = NextChurnValue();
            _space.Write(churnSlot, parentValue);
            _churnSlots[page] = parentValue;
            long childSees = child.Read<long>(churnSlot);
            if (childSees != childValue)
                Violate($"fork: the parent's write to 0x{churnSlot:x} leaked into the child (0x{childSees:x}, expected 0x{childValue:x})");

            child.Read(counters, MemoryMarshal.AsBytes(again));
            if (!again.SequenceEqual(snapshot))
                Violate($"fork: the child's counters on page {page} changed while only the parent was written");

            for (int s = 0; s < StressOptions.ScratchPages; s++)
            {
                ulong address = _scratch + ((ulong)s * PagePool.PageSize);
                long value = child.Read<long>(address);
                if (value != _scratchPatterns[s])
                    Violate($"fork: the child's scratch page 0x{address:x} starts with 0x{value:x}, the parent's with 0x{_scratchPatterns[s]:x}");
            }

            // The child works: an add of its own, seen by it alone.
            int childAdd = child.AtomicAdd(counters, 1);
            if (childAdd != unchecked(snapshot[0] + 1))
                Violate($"fork: the child's AtomicAdd on 0x{counters:x} returned {childAdd}, its copy held {snapshot[0]}");
            child.Write(counters, snapshot[0]);
            CheckChildHoldsNothingExclusive(child);

            if (grandchild)
            {
                using AddressSpace grand = child.Fork();
                CheckChildHoldsNothingExclusive(grand);
                grand.Read(counters, MemoryMarshal.AsBytes(again));
                long grandChurn = grand.Read<long>(churnSlot);
                if (!again.SequenceEqual(snapshot) || grandChurn != childValue)
                    Violate($"fork: a fork of the child does not match the child on page {page}");
                _churnStats.GrandchildForks++;
            }
        }

        _churnStats.Forks++;
    }

    /// <summary>A forked child never holds device-exclusive entries (DESIGN §3.4): Inspect every page it shares with devices.</summary>
    private void CheckChildHoldsNothingExclusive(AddressSpace child)
    {
        for (int page = 0; page <= _options.CounterPages; page++)
        {
            ulong address = page == _options.CounterPages ? _permutation : _counters + ((ulong)page * PagePool.PageSize);
            PageInfo info = child.Inspect(address);
            if (info.State == PageState.DeviceExclusive)
                Violate($"fork: the child holds a device-exclusive entry at 0x{address:x} ({info})", Invariants.ForkChildren);
        }

        Interlocked.Add(ref _childPagesInspected, _options.CounterPages + 1);
    }

    /// <summary>Makes a random run of counter pages read-only for a moment, then read-write again.</summary>
    private void ProtectWindow(ref SplitMix64 random)
    {
        int first = random.NextInt(_options.CounterPages);
        int count = 1 + random.NextInt(_options.CounterPages - first);
        ulong address = _counters + ((ulong)first * PagePool.PageSize);
        ulong length = (ulong)count * PagePool.PageSize;
        ulong churnSlot = ChurnSlot(_counters, first);

        _protectGate.EnterWriteLock();
        Interlocked.Increment(ref _protectEpoch);
        try
        {
            _space.Protect(address, length, Protection.Read);
            try
            {
                _space.Write(churnSlot, NextChurnValue());
                Violate($"protect: a write to 0x{churnSlot:x} succeeded while the page was read-only");
            }
            catch (MemoryAccessException e) when (e.IsWrite)
            {
            }

            long value = _space.Read<long>(churnSlot);
            if (value != _churnSlots[first])
                Violate($"protect: a rejected write to 0x{churnSlot:x} changed it to 0x{value:x}");

            // Give the workers a chance to run into the window.
            Thread.Yield();
            _space.Protect(address, length, Protection.ReadWrite);
        }
        finally
        {
            Interlocked.Increment(ref _protectEpoch);
            _protectGate.ExitWriteLock();
        }

        _churnStats.ProtectWindows++;
    }

    /// <summary>Checks soft-dirty on a scratch page that only this thread touches: cleared, untouched by a read, set by a write.</summary>
    private void ClearSoftDirtyAndCheck(ref SplitMix64 random)
    {
        int page = random.NextInt(StressOptions.ScratchPages);
        ulong address = _scratch + ((ulong)page * PagePool.PageSize);
        long first = NextChurnValue();
        long second = NextChurnValue();

        _space.Write(address, first);
        _scratchPatterns[page] = first;
        _space.ClearSoftDirty();
        PageInfo cleared = _space.Inspect(address);
        if (cleared.State != PageState.Present || cleared.SoftDirty)
            Violate($"soft-dirty: after ClearSoftDirty the written page 0x{address:x} shows {cleared}");

        long value = _space.Read<long>(address);
        if (value != first)
            Violate($"soft-dirty: ClearSoftDirty changed 0x{address:x} from 0x{first:x} to 0x{value:x}");
        if (_space.Inspect(address).SoftDirty)
            Violate($"soft-dirty: a read of 0x{address:x} set SoftDirty");

        _space.Write(address, second);
        _scratchPatterns[page] = second;
        PageInfo written = _space.Inspect(address);
        if (!written.SoftDirty || !written.Dirty)
            Violate($"soft-dirty: a write to 0x{address:x} after ClearSoftDirty left {written}");
        _churnStats.SoftDirtyClears++;
    }

    private void LockAndUnlock(ref SplitMix64 random)
    {
        int first = random.NextInt(_options.CounterPages);
        int count = 1 + random.NextInt(_options.CounterPages - first);
        ulong address = _counters + ((ulong)first * PagePool.PageSize);
        ulong length = (ulong)count * PagePool.PageSize;
        _space.Lock(address, length);
        _space.Lock(_scratch, _scratchBytes);
        _space.Unlock(address, length);
        _space.Unlock(_scratch, _scratchBytes);
        _churnStats.LockUnlocks++;
    }

    /// <summary>Writes a run of scratch pages, discards them (MADV_DONTNEED) and checks they come back as zeros.</summary>
    private void DiscardScratch(ref SplitMix64 random)
    {
        int first = random.NextInt(StressOptions.ScratchPages);
        int count = 1 + random.NextInt(StressOptions.ScratchPages - first);
        ulong start = _scratch + ((ulong)first * PagePool.PageSize);
        for (int s = first; s < first + count; s++)
        {
            ulong page = _scratch + ((ulong)s * PagePool.PageSize);
            long value = NextChurnValue();
            _space.Write(page, value);
            _space.Write(page + PagePool.PageSize - sizeof(long), value);
            _scratchPatterns[s] = value;
        }

        _space.Discard(start, (ulong)count * PagePool.PageSize);
        for (int s = first; s < first + count; s++)
        {
            ulong page = _scratch + ((ulong)s * PagePool.PageSize);
            PageInfo info = _space.Inspect(page);
            if (info.State != PageState.NotPresent)
                Violate($"discard: page 0x{page:x} shows {info} after Discard");
            long head = _space.Read<long>(page);
            long tail = _space.Read<long>(page + PagePool.PageSize - sizeof(long));
            if (head != 0 || tail != 0)
                Violate($"discard: page 0x{page:x} reads 0x{head:x}/0x{tail:x} after Discard, not zeros");
            _scratchPatterns[s] = 0;
        }

        _churnStats.Discards++;
    }

    /// <summary>Punches a hole in the scratch region (splitting it), unmaps the rest, checks access faults, maps it anew.</summary>
    private void RemapScratch(ref SplitMix64 random)
    {
        const int pages = StressOptions.ScratchPages;
        int hole = 1 + random.NextInt(pages - 2);
        ulong holeAddress = _scratch + ((ulong)hole * PagePool.PageSize);

        _space.Unmap(holeAddress, PagePool.PageSize);
        ExpectFault(() => _space.Read<long>(holeAddress), holeAddress, isWrite: false);
        ExpectFault(() => _space.Write(holeAddress, 1L), holeAddress, isWrite: true);
        foreach (int neighbour in (int[])[hole - 1, hole + 1])
        {
            ulong address = _scratch + ((ulong)neighbour * PagePool.PageSize);
            long value = _space.Read<long>(address);
            if (value != _scratchPatterns[neighbour])
                Violate($"unmap: unmapping 0x{holeAddress:x} changed its neighbour 0x{address:x} to 0x{value:x}");
        }

        _space.Unmap(_scratch, (ulong)hole * PagePool.PageSize);
        _space.Unmap(holeAddress + PagePool.PageSize, (ulong)(pages - hole - 1) * PagePool.PageSize);
        ExpectFault(() => _space.Read<long>(_scratch), _scratch, isWrite: false);

        _scratch = _space.Map(_scratchBytes, Protection.ReadWrite);
        Array.Clear(_scratchPatterns);
        long fresh = _space.Read<long>(_scratch + _scratchBytes - sizeof(long));
        if (fresh != 0)
            Violate($"map: a fresh mapping at 0x{_scratch:x} reads 0x{fresh:x}, not zero");
        _churnStats.Remaps++;
    }

    private void ExpectFault(Action access, ulong address, bool isWrite)
    {
        try
        {
            access();
            Violate($"unmap: a {(isWrite ? "write" : "read")} of unmapped 0x{address:x} succeeded");
        }
        catch (MemoryAccessException e)
        {
            if (e.IsWrite != isWrite || e.Address != address)
                Violate($"unmap: a {(isWrite ? "write" : "read")} of unmapped 0x{address:x} failed as '{e.Message}' (IsWrite {e.IsWrite}, Address 0x{e.Address:x})");
        }
    }

    /// <summary>After every thread stopped: each counter equals the sum of its tracked adds, each slot its last write.</summary>
    private void CheckFinalState()
    {
        int pages = _options.CounterPages;
        Span<int> counters = stackalloc int[CountersPerPage];
        var zeros = new byte[ChurnSlotOffset - ZeroOffset];
        for (int page = 0; page < pages; page++)
        {
            _space.Read(Counter(_counters, page, 0), MemoryMarshal.AsBytes(counters));
            for (int c = 0; c < CountersPerPage; c++)
            {
                long expected = 0;
                foreach (WorkerState worker in _workers)
                    expected += worker.Added[(page * CountersPerPage) + c];
                foreach (DeviceState device in _deviceStates)
                    expected += device.Added[(page * CountersPerPage) + c];
                if (counters[c] != unchecked((int)expected))
                    Violate($"final: counter 0x{Counter(_counters, page, c):x} is {counters[c]}, its tracked CPU and device adds sum to {expected} (lost or duplicated updates)", Invariants.CounterTotals);
            }

            for (int w = 0; w < _workers.Length; w++)
            {
                long slot = _space.Read<long>(WorkerSlot(_counters, page, w));
                if (slot != _workers[w].ExpectedSlots[page])
                    Violate($"final: worker {w}'s slot on page {page} is 0x{slot:x}, it last wrote 0x{_workers[w].ExpectedSlots[page]:x}");
            }

            long churn = _space.Read<long>(ChurnSlot(_counters, page));
            if (churn != _churnSlots[page])
                Violate($"final: churn slot on page {page} is 0x{churn:x}, expected 0x{_churnSlots[page]:x}");

            _space.Read(_counters + ((ulong)page * PagePool.PageSize) + ZeroOffset, zeros);
            if (zeros.AsSpan().IndexOfAnyExcept((byte)0) is int offset and >= 0)
                Violate($"final: never-written byte at page {page} offset {ZeroOffset + offset} is 0x{zeros[offset]:x2}");
        }
    }

    private void CheckPermutations()
    {
        for (int d = 0; d < _deviceStates.Length; d++)
        {
            int value = _space.Read<int>(PermutationCounter(d));
            if (_deviceStates[d].Permutation.Finish(value) is { } problem)
                Violate($"final: device {d}'s permutation counter 0x{PermutationCounter(d):x}: {problem}", Invariants.ExactlyOnce);
        }
    }
}
