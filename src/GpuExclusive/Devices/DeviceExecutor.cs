using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace GpuExclusive.Devices;

/// <summary>
/// Decides what runs on a device and when: one-shot batch launches, the resident kernel that serves small batches
/// without a launch each, and the callbacks that must hold every kernel off (<see cref="Quiesce"/>, for a table swap
/// or a teardown). Invalidations do not come here: they clear device PTEs and wait on hazard words
/// (<see cref="Kernels.AtomicBatchKernel"/>), with the kernel left running.
/// </summary>
/// <remarks>
/// <para>
/// Every launch runs on the device's launcher thread (a launch blocks its caller on the CPU accelerator, and
/// <c>Synchronize</c> on CUDA), so that the thread that asked for it waits with a deadline instead (docs/architecture.md,
/// "bounded waits"): a device that makes no progress for <see cref="Timeout"/> is declared failed
/// (<see cref="DeviceFailedException"/>), the waiter and every later caller get the failure, and the launcher thread is
/// left behind inside the stuck launch.
/// </para>
/// <para>
/// The resident kernel stays until it has been idle for the resident idle time, a one-shot launch or another mirror
/// needs the device, another CPU-accelerator device takes the residency, or a callback quiesces it: its stop flag is
/// raised only while no batch is on it.
/// </para>
/// </remarks>
internal sealed class DeviceExecutor : IDisposable
{
    private readonly Action<bool> _setStopFlag;
    private readonly TimeSpan _stopPollInterval;
    private readonly TimeSpan? _residentIdle;
    private readonly Timer? _idleTimer; // null where the resident kernel leaves by itself
    private readonly string _deviceName;
    private readonly Func<long> _heartbeat;
    private readonly Action<DeviceFailedException> _onFailure;
    private readonly Action _afterLaunch;

    // Guards everything below; launchers, batches, quiescers and the launcher thread wait on it.
    private readonly object _gate = new();
    private bool _running;           // a one-shot launch, or a batch on the resident kernel, owns the device
    private int _quiescers;
    private bool _resident;          // the resident kernel is live, or about to be launched
    private bool _residentExiting;   // ... and its stop flag is raised
    private object? _residentOwner;  // what it was launched for (a mirror): its table and pool are launch arguments
    private long _residentGeneration; // which resident launch _resident is about: a stopper must never stop the next one
    private Action? _pendingResidentLaunch;
    private Exception? _residentFailure;
    private Action? _pendingLaunch;  // a one-shot launch handed to the launcher thread
    private long _launchGeneration;  // bumped as each one-shot launch returns (on the launcher thread)
    private Exception? _launchError; // what the last one-shot launch threw
    private bool _idleArmed;
    private long _lastBatchEnd;
    private bool _disposed;
    private Thread? _launcherThread;

    // Set once, under _gate; read without it on hot paths (a volatile read).
    private volatile DeviceFailedException? _failure;

    private long _launches;
    private long _residentLaunches;
    private long _stops;

    // The executor whose resident kernel may poll on the CPU accelerator: its kernel spins on a core while it waits,
    // and two of them on a small machine starve the host threads that would give them work (milliseconds of
    // scheduler slices instead of microseconds). A second device taking residency stops the first.
    private static DeviceExecutor? s_cpuResidentHolder;

    private readonly bool _sharesCpuResidency;

    /// <param name="deviceName">Names the device in a <see cref="DeviceFailedException"/>.</param>
    /// <param name="setStopFlag">Raises or clears the stop flag the kernels poll.</param>
    /// <param name="stopPollInterval">How often a quiescer raises the flag again while it waits.</param>
    /// <param name="residentIdle">
    /// How long the resident kernel may wait for a batch before the host stops it; null where the kernel leaves by itself
    /// (the CPU accelerator's idle polls), so no timer runs: a timer firing every millisecond while batches come wakes a
    /// pool thread that takes the executor's lock and, on a small machine, a core from the kernel or the host.
    /// </param>
    /// <param name="timeout">How long a host wait may see no progress before the device is declared failed.</param>
    /// <param name="heartbeat">The sum of the kernels' heartbeat words: progress, for the deadlines.</param>
    /// <param name="onFailure">Called once, outside the executor's lock, when the device is declared failed.</param>
    /// <param name="afterLaunch">Called on the launcher thread after every launch returns (deferred frees of a failed device).</param>
    /// <param name="sharesCpuResidency">True on the CPU accelerator: one resident kernel in the process at a time.</param>
    internal DeviceExecutor(
        string deviceName,
        Action<bool> setStopFlag,
        TimeSpan stopPollInterval,
        TimeSpan? residentIdle,
        TimeSpan timeout,
        Func<long> heartbeat,
        Action<DeviceFailedException> onFailure,
        Action afterLaunch,
        bool sharesCpuResidency = false)
    {
        _deviceName = deviceName;
        _sharesCpuResidency = sharesCpuResidency;
        _setStopFlag = setStopFlag;
        // A monitor wait has millisecond resolution: a shorter timeout is a zero timeout, and a waiter that loops on
        // it spins — on a small machine, taking the very core the launch it waits for needs to return. The launch's
        // return pulses the waiter at once either way; the timeout is only the fallback re-raise of the flag.
        _stopPollInterval = stopPollInterval < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : stopPollInterval;
        _residentIdle = residentIdle;
        Timeout = timeout;
        _heartbeat = heartbeat;
        _onFailure = onFailure;
        _afterLaunch = afterLaunch;
        _idleTimer = residentIdle is null ? null : new Timer(_ => StopIdleResident());
    }

    /// <summary>How long a host wait may see no progress before the device is declared failed.</summary>
    internal TimeSpan Timeout { get; }

    /// <summary>One-shot launches and resident-kernel launches.</summary>
    internal long Launches => Interlocked.Read(ref _launches);

    /// <summary>Resident-kernel launches.</summary>
    internal long ResidentLaunches => Interlocked.Read(ref _residentLaunches);

    /// <summary>Times a running kernel was asked to stop early.</summary>
    internal long Stops => Interlocked.Read(ref _stops);

    /// <summary>The failure the device was declared with, or null while it answers.</summary>
    internal DeviceFailedException? Failure => _failure;

    /// <summary>True while the resident kernel is launched (or about to be).</summary>
    internal bool IsResident
    {
        get
        {
            lock (_gate)
            {
                return _resident;
            }
        }
    }

    /// <summary>A bound for a wait that happens outside the executor (a spin on a shared word).</summary>
    internal DeviceDeadline StartDeadline() => new(Timeout, _heartbeat);

    /// <summary>Throws the device's failure, if it was declared failed.</summary>
    internal void ThrowIfFailed()
    {
        if (_failure is { } failure)
        {
            throw failure.Again();
        }
    }

    /// <summary>
    /// Declares the device failed because a wait for <paramref name="waitingFor"/> saw no progress (a waiter outside the
    /// executor calls this when its <see cref="DeviceDeadline"/> expires), and returns the failure to throw. The first
    /// declaration wins; later ones return it again.
    /// </summary>
    internal DeviceFailedException Fail(string waitingFor)
    {
        DeviceFailedException failure;
        bool first;
        lock (_gate)
        {
            (failure, first) = FailLocked(waitingFor);
        }

        if (first)
        {
            _onFailure(failure);
        }

        return first ? failure : failure.Again();
    }

    /// <summary>
    /// Runs <paramref name="launch"/> (a blocking kernel launch) on the launcher thread once nothing else runs and no
    /// callback holds the device, and waits for it to return, within the device's deadline. While it runs, the calling
    /// thread calls <paramref name="service"/> (the host's side of replayable device faults: it maps the pages the
    /// kernel waits for) as often as it finds work, and polls it at least once a millisecond otherwise.
    /// </summary>
    /// <exception cref="DeviceFailedException">The launch made no progress for the timeout, or the device had failed before.</exception>
    /// <remarks>
    /// An exception from <paramref name="service"/> raises the stop flag, so the kernel leaves early, and is thrown
    /// once the launch has returned: the device is never left running a kernel nobody waits for.
    /// </remarks>
    internal void Launch(Action launch, Func<bool>? service = null)
    {
        long generation;
        lock (_gate)
        {
            WaitForIdleDeviceLocked(owner: null);
            // Clear the flag before claiming the device: if the device is gone this throws with nothing claimed.
            _setStopFlag(false);
            _running = true;
            Interlocked.Increment(ref _launches);
            generation = _launchGeneration;
            _launchError = null;
            _serviceSignal.Reset();
            _pendingLaunch = launch;
            EnsureLauncherThreadLocked();
            Monitor.PulseAll(_gate);
        }

        DeviceFailedException? declared = null;
        Exception? serviceError = null;
        try
        {
            declared = service is null ? WaitForLaunch(generation) : ServeLaunch(generation, service, out serviceError);
        }
        finally
        {
            lock (_gate)
            {
                _running = false;
                Monitor.PulseAll(_gate);
            }
        }

        if (declared is not null)
        {
            _onFailure(declared);
            throw declared;
        }

        if (serviceError is not null)
        {
            ExceptionDispatchInfo.Throw(serviceError);
        }

        if (_launchError is { } error)
        {
            ExceptionDispatchInfo.Throw(error);
        }
    }

    /// <summary>
    /// Wakes a thread that services a running launch's faults (<see cref="Launch"/>) from its idle wait: a revocation
    /// of a page a running kernel may use calls this, since the kernel will fault on it next.
    /// </summary>
    internal void HintFaultsComing() => _serviceSignal.Set();

    private DeviceFailedException? WaitForLaunch(long generation)
    {
        lock (_gate)
        {
            return WaitForDeviceLocked(() => Volatile.Read(ref _launchGeneration) != generation, "a kernel launch to return");
        }
    }

    /// <summary>Waits for the launch to return, servicing its faults meanwhile; returns the failure declared past the deadline, if any.</summary>
    private DeviceFailedException? ServeLaunch(long generation, Func<bool> service, out Exception? serviceError)
    {
        serviceError = null;
        var deadline = StartDeadline();
        var idle = 0;
        Func<bool>? pump = service;
        while (Volatile.Read(ref _launchGeneration) == generation)
        {
            ThrowIfFailed();
            _serviceSignal.Reset();
            var worked = false;
            if (pump is not null)
            {
                try
                {
                    worked = pump();
                }
                catch (Exception ex)
                {
                    serviceError = ex;
                    pump = null;
                    _setStopFlag(true); // end the launch: its caller is about to fail
                }
            }

            if (worked)
            {
                idle = 0;
                continue;
            }

            if (deadline.Expired())
            {
                DeviceFailedException failure;
                bool first;
                lock (_gate)
                {
                    (failure, first) = FailLocked("a kernel launch to return");
                }

                if (first)
                {
                    return failure;
                }

                throw failure.Again();
            }

            // Faults come in bursts (a revocation, then every thread on that page): poll closely for a while, then
            // sleep until the launch returns, a revocation hints that faults are coming, or a millisecond passes.
            // Busy polls, not yields: on a busy machine a yielded core comes back only after a scheduler slice.
            if (++idle < ServicePollsBeforeSleeping)
            {
                Thread.SpinWait(64);
            }
            else
            {
                _serviceSignal.Wait(1);
            }
        }

        return null;
    }

    // Polls of the fault ring (a few hundred nanoseconds apart) before the service thread sleeps: about 100 µs.
    private const int ServicePollsBeforeSleeping = 256;

    // Set when a one-shot launch returns, or a revocation hints at faults: wakes the thread servicing the launch.
    private readonly ManualResetEventSlim _serviceSignal = new(false, spinCount: 0);

    /// <summary>
    /// Runs <paramref name="batch"/> (which rings the resident kernel and waits for it) with the resident kernel of
    /// <paramref name="owner"/> live, launching it through <paramref name="residentLaunch"/> first if needed (on the
    /// launcher thread; <paramref name="prepare"/> runs before, with nothing on the device). <paramref name="batch"/>
    /// returns false, having rung nothing, when the kernel had closed its doorbell (it left after its idle polls):
    /// then a new one is launched and the batch tried again.
    /// </summary>
    internal void RunResident(object owner, Action prepare, Action residentLaunch, Func<bool> batch)
    {
        while (!TryRunResident(owner, prepare, residentLaunch, batch))
        {
        }
    }

    private bool TryRunResident(object owner, Action prepare, Action residentLaunch, Func<bool> batch)
    {
        DeviceExecutor? displaced = null;
        lock (_gate)
        {
            WaitForIdleDeviceLocked(owner);
            if (!_resident)
            {
                _setStopFlag(false);
                prepare();

                // Taken only once nothing above can throw: a token left with a device that has no resident kernel
                // would let two poll at once.
                if (_sharesCpuResidency)
                {
                    displaced = Interlocked.Exchange(ref s_cpuResidentHolder, this);
                }

                _resident = true;
                _residentGeneration++;
                _residentOwner = owner;
                _residentFailure = null;
                _pendingResidentLaunch = residentLaunch;
                EnsureLauncherThreadLocked();
                Monitor.PulseAll(_gate);
            }

            _running = true;
        }

        // Outside our gate: the other executor takes its own.
        if (displaced is not null && displaced != this)
        {
            displaced.GiveUpResidency();
        }

        var rung = true;
        try
        {
            rung = batch();
        }
        finally
        {
            lock (_gate)
            {
                _running = false;
                _lastBatchEnd = Stopwatch.GetTimestamp();
                if (_failure is not null)
                {
                    // Nothing to arrange: the device takes no more work.
                }
                else if (!rung && _resident)
                {
                    // The kernel closed its doorbell and is returning: the next try waits for it and launches anew.
                    _residentExiting = true;
                }
                else if (_sharesCpuResidency && _resident && !_residentExiting && Volatile.Read(ref s_cpuResidentHolder) != this)
                {
                    // Another device took residency while this batch ran.
                    _residentExiting = true;
                    _setStopFlag(true);
                }
                else if (_resident && !_idleArmed && _residentIdle is { } idle)
                {
                    ArmIdleTimerLocked(idle);
                }

                Monitor.PulseAll(_gate);
            }
        }

        return rung;
    }

    /// <summary>
    /// Whether the resident kernel a batch waits on is still there; if it went away (its launch failed), throws what
    /// the launch threw.
    /// </summary>
    internal void ThrowIfResidentGone()
    {
        lock (_gate)
        {
            if (_resident)
            {
                return;
            }

            if (_residentFailure is { } failure)
            {
                ExceptionDispatchInfo.Throw(failure);
            }

            throw new InvalidOperationException("the resident kernel returned while a batch was on it");
        }
    }

    /// <summary>
    /// Stops every kernel (waiting for a batch on the resident kernel to finish first) and holds launches back until
    /// <see cref="Resume"/>. On a failed device it only holds launches back (there are none): it never waits for a
    /// kernel that stopped answering, and it never throws, since disposal and table swaps call it.
    /// </summary>
    internal void Quiesce()
    {
        DeviceFailedException? declared = null;
        lock (_gate)
        {
            _quiescers++;
            var deadline = StartDeadline();
            while (_failure is null && _running && !IsOneShotRunningLocked())
            {
                // A batch on the resident kernel: it never waits for us, and its own wait is bounded. Let it finish.
                Monitor.Wait(_gate, _stopPollInterval);
                if (_running && !IsOneShotRunningLocked() && deadline.Expired())
                {
                    (declared, _) = FailLocked("a batch on the resident kernel to finish before a quiesce");
                }
            }

            if (_failure is null && _running)
            {
                Interlocked.Increment(ref _stops);
                _setStopFlag(true);
                // Woken when the launch returns; between wake-ups the flag is raised again every poll interval, so a
                // kernel whose first read of it raced with an earlier clear still sees it.
                declared = WaitForDeviceLocked(() => !_running, "a running kernel to stop", () => _setStopFlag(true));
            }

            if (_failure is null)
            {
                declared ??= EndResidentLocked();
            }
        }

        if (declared is not null)
        {
            _onFailure(declared);
        }
    }

    /// <summary>Lets launches go on after <see cref="Quiesce"/>.</summary>
    internal void Resume()
    {
        lock (_gate)
        {
            Debug.Assert(_quiescers > 0, "Resume without Quiesce");
            if (--_quiescers == 0)
            {
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>
    /// Ends the launcher thread; call quiesced, after the last launch. On a failed device whose launcher thread is still
    /// inside a stuck launch it waits at most <see cref="Timeout"/> and leaves the thread behind.
    /// </summary>
    /// <returns>False when the launcher thread is still inside a launch (only on a failed device).</returns>
    public bool DisposeAndJoin()
    {
        DeviceFailedException? declared = null;
        lock (_gate)
        {
            if (_failure is null)
            {
                declared = EndResidentLocked();
            }

            _disposed = true;
            Monitor.PulseAll(_gate);
        }

        if (declared is not null)
        {
            _onFailure(declared);
        }

        _idleTimer?.Dispose();
        // The service signal is never disposed: a revocation may still hint at it (it holds no kernel handle unless one
        // is asked for, and nothing here asks).
        return _launcherThread?.Join(_failure is null ? System.Threading.Timeout.InfiniteTimeSpan : Timeout) ?? true;
    }

    /// <inheritdoc/>
    public void Dispose() => DisposeAndJoin();

    // A one-shot launch holds the device with no resident kernel live (it ended the resident kernel first).
    private bool IsOneShotRunningLocked() => _running && !_resident;

    /// <summary>Waits until the device is free for <paramref name="owner"/>'s resident kernel (or, with null, for a one-shot launch).</summary>
    /// <exception cref="DeviceFailedException">The device failed (before, or while ending the resident kernel).</exception>
    /// <exception cref="ObjectDisposedException">The device was disposed.</exception>
    private void WaitForIdleDeviceLocked(object? owner)
    {
        while (true)
        {
            ThrowIfFailed();
            if (_disposed)
            {
                throw new ObjectDisposedException(nameof(ExclusiveDevice));
            }

            if (_running || _quiescers > 0)
            {
                Monitor.Wait(_gate);
                continue;
            }

            if (_resident && (owner is null || _residentExiting || !ReferenceEquals(owner, _residentOwner)))
            {
                if (EndResidentLocked() is { } declared)
                {
                    // Called with the lock held: the failure's callback runs on a pool thread, outside it.
                    ThreadPool.UnsafeQueueUserWorkItem(static state => state.Executor._onFailure(state.Failure), (Executor: this, Failure: declared), preferLocal: false);
                    throw declared;
                }

                continue;
            }

            return;
        }
    }

    /// <summary>
    /// Stops the resident kernel, if any, and waits for its launch to return. Called with no batch on it. Returns the
    /// failure declared if it did not return in time (the caller runs the failure callback outside the lock).
    /// </summary>
    private DeviceFailedException? EndResidentLocked()
    {
        if (!_resident)
        {
            return null;
        }

        if (_pendingResidentLaunch is not null)
        {
            // Never launched: nothing to stop.
            _pendingResidentLaunch = null;
            ResidentGoneLocked(null);
            return null;
        }

        // While we wait, the launch may return and the next resident kernel start (for another caller); raising the
        // flag again then would stop that one with a batch on it. Only this generation is ours to stop.
        var generation = _residentGeneration;
        _residentExiting = true;
        _setStopFlag(true);
        return WaitForDeviceLocked(
            () => !_resident || _residentGeneration != generation,
            "the resident kernel to stop",
            () =>
            {
                if (_resident && _residentGeneration == generation)
                {
                    _setStopFlag(true);
                }
            });
    }

    /// <summary>
    /// Waits (releasing the lock) until <paramref name="done"/>, calling <paramref name="everyPoll"/> at each poll
    /// interval, within the device's deadline. Returns null when done, or the failure declared when the deadline passed
    /// — the caller runs the failure callback once it has left the lock — and throws if another thread declared it.
    /// </summary>
    private DeviceFailedException? WaitForDeviceLocked(Func<bool> done, string what, Action? everyPoll = null)
    {
        var deadline = StartDeadline();
        while (!done())
        {
            ThrowIfFailed();
            var slice = deadline.UntilCheckpoint;
            if (everyPoll is not null && slice > _stopPollInterval)
            {
                slice = _stopPollInterval;
            }

            if (slice > TimeSpan.Zero && Monitor.Wait(_gate, slice))
            {
                continue; // pulsed: look again before the next poll
            }

            if (done())
            {
                break;
            }

            everyPoll?.Invoke();
            if (deadline.Expired())
            {
                var (failure, first) = FailLocked(what);
                if (first)
                {
                    return failure;
                }

                throw failure.Again();
            }
        }

        return null;
    }

    /// <summary>Records the failure (the first one wins), raises the stop flag for whatever may still listen, and wakes every waiter.</summary>
    private (DeviceFailedException Failure, bool First) FailLocked(string waitingFor)
    {
        if (_failure is { } existing)
        {
            return (existing, false);
        }

        var failure = new DeviceFailedException(_deviceName, waitingFor, Timeout);
        _failure = failure;
        _running = false;
        _setStopFlag(true);
        Monitor.PulseAll(_gate);
        return (failure, true);
    }

    private void ResidentGoneLocked(Exception? failure)
    {
        if (_sharesCpuResidency)
        {
            Interlocked.CompareExchange(ref s_cpuResidentHolder, null, this);
        }

        _resident = false;
        _residentExiting = false;
        _residentOwner = null;
        _residentFailure = failure;
        Monitor.PulseAll(_gate);
    }

    /// <summary>Another device took the CPU residency: stop our resident kernel now if no batch is on it (else when it ends).</summary>
    private void GiveUpResidency()
    {
        if (Volatile.Read(ref s_cpuResidentHolder) == this)
        {
            return; // a late call: this device has taken the residency back since
        }

        lock (_gate)
        {
            if (_resident && !_residentExiting && !_running && _pendingResidentLaunch is null)
            {
                _residentExiting = true;
                _setStopFlag(true);
            }
        }
    }

    /// <summary>The idle timer: stops the resident kernel once no batch came for the idle time.</summary>
    private void StopIdleResident()
    {
        lock (_gate)
        {
            _idleArmed = false;
            if (!_resident || _residentExiting || _disposed || _failure is not null)
            {
                return;
            }

            var limit = _residentIdle!.Value; // armed only when there is one
            var idle = Stopwatch.GetElapsedTime(_lastBatchEnd);
            if (_running || idle < limit)
            {
                ArmIdleTimerLocked(limit - idle);
                return;
            }

            if (_quiescers > 0)
            {
                return; // the quiescer ends it
            }

            // Raise the flag and let the launcher thread report the end; nobody needs to wait here.
            _residentExiting = true;
            _setStopFlag(true);
        }
    }

    private void ArmIdleTimerLocked(TimeSpan due)
    {
        // A timer has millisecond resolution: a shorter due time fires at once, and a timer re-armed that way while
        // batches keep coming would spin a pool thread. On the CPU accelerator the kernel leaves by itself after its
        // idle polls anyway; this timer is what stops it on a GPU.
        _idleArmed = true;
        _idleTimer!.Change(due < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : due, System.Threading.Timeout.InfiniteTimeSpan);
    }

    private void EnsureLauncherThreadLocked()
    {
        if (_launcherThread is not null)
        {
            return;
        }

        _launcherThread = new Thread(RunLauncher) { IsBackground = true, Name = $"GpuExclusive launcher ({_deviceName})" };
        _launcherThread.Start();
    }

    /// <summary>The launcher thread: runs each launch handed to it, one at a time, and reports its end.</summary>
    private void RunLauncher()
    {
        while (true)
        {
            Action launch;
            bool resident;
            lock (_gate)
            {
                while (_pendingLaunch is null && _pendingResidentLaunch is null && !_disposed)
                {
                    Monitor.Wait(_gate);
                }

                if (_pendingLaunch is { } oneShot)
                {
                    launch = oneShot;
                    resident = false;
                    _pendingLaunch = null;
                }
                else if (_pendingResidentLaunch is { } residentLaunch)
                {
                    launch = residentLaunch;
                    resident = true;
                    _pendingResidentLaunch = null;
                    Interlocked.Increment(ref _launches);
                    Interlocked.Increment(ref _residentLaunches);
                }
                else
                {
                    return; // disposed, nothing pending
                }
            }

            Exception? failure = null;
            try
            {
                launch();
            }
            catch (Exception e)
            {
                failure = e;
            }

            lock (_gate)
            {
                if (resident)
                {
                    ResidentGoneLocked(failure);
                }
                else
                {
                    _launchError = failure;
                    Interlocked.Increment(ref _launchGeneration);
                    Monitor.PulseAll(_gate);
                }
            }

            _serviceSignal.Set();

            _afterLaunch();
        }
    }
}
