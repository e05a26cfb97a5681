using System.Diagnostics;

namespace GpuExclusive.Devices;

/// <summary>
/// Decides what runs on a device and when: one-shot batch launches, the resident kernel that serves small batches
/// without a launch each, and the callbacks that must hold every kernel off (<see cref="Quiesce"/>, for a table swap
/// or a teardown). Invalidations do not come here: they clear device PTEs and wait on hazard words
/// (<see cref="Kernels.AtomicBatchKernel"/>), with the kernel left running.
/// </summary>
/// <remarks>
/// The resident kernel is launched by a background thread (a launch blocks its caller on the CPU accelerator, and
/// <c>Synchronize</c> on CUDA) and stays until it has been idle for the resident idle time, a one-shot launch or another
/// mirror needs the device, another CPU-accelerator device takes the residency, or a callback quiesces it: its stop
/// flag is raised only while no batch is on it.
/// </remarks>
internal sealed class DeviceExecutor : IDisposable
{
    private readonly Action<bool> _setStopFlag;
    private readonly TimeSpan _stopPollInterval;
    private readonly TimeSpan? _residentIdle;
    private readonly Timer? _idleTimer; // null where the resident kernel leaves by itself

    // Guards everything below; launchers, batches, quiescers and the resident launcher thread wait on it.
    private readonly object _gate = new();
    private bool _running;           // a one-shot launch, or a batch on the resident kernel, owns the device
    private int _quiescers;
    private bool _resident;          // the resident kernel is live, or about to be launched
    private bool _residentExiting;   // ... and its stop flag is raised
    private object? _residentOwner;  // what it was launched for (a mirror): its table and pool are launch arguments
    private long _residentGeneration; // which resident launch _resident is about: a stopper must never stop the next one
    private Action? _pendingResidentLaunch;
    private Exception? _residentFailure;
    private bool _idleArmed;
    private long _lastBatchEnd;
    private bool _disposed;
    private Thread? _launcherThread;

    private long _launches;
    private long _residentLaunches;
    private long _stops;

    // The executor whose resident kernel may poll on the CPU accelerator: its kernel spins on a core while it waits,
    // and two of them on a small machine starve the host threads that would give them work (milliseconds of
    // scheduler slices instead of microseconds). A second device taking residency stops the first.
    private static DeviceExecutor? s_cpuResidentHolder;

    private readonly bool _sharesCpuResidency;

    /// <param name="setStopFlag">Raises or clears the stop flag the kernels poll.</param>
    /// <param name="stopPollInterval">How often a quiescer raises the flag again while it waits.</param>
    /// <param name="residentIdle">
    /// How long the resident kernel may wait for a batch before the host stops it; null where the kernel leaves by itself
    /// (the CPU accelerator's idle polls), so no timer runs: a timer firing every millisecond while batches come wakes a
    /// pool thread that takes the executor's lock and, on a small machine, a core from the kernel or the host.
    /// </param>
    /// <param name="sharesCpuResidency">True on the CPU accelerator: one resident kernel in the process at a time.</param>
    internal DeviceExecutor(Action<bool> setStopFlag, TimeSpan stopPollInterval, TimeSpan? residentIdle, bool sharesCpuResidency = false)
    {
        _sharesCpuResidency = sharesCpuResidency;
        _setStopFlag = setStopFlag;
        // A monitor wait has millisecond resolution: a shorter timeout is a zero timeout, and a waiter that loops on
        // it spins — on a small machine, taking the very core the launch it waits for needs to return. The launch's
        // return pulses the waiter at once either way; the timeout is only the fallback re-raise of the flag.
        _stopPollInterval = stopPollInterval < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : stopPollInterval;
        _residentIdle = residentIdle;
        _idleTimer = residentIdle is null ? null : new Timer(_ => StopIdleResident());
    }

    /// <summary>One-shot launches and resident-kernel launches.</summary>
    internal long Launches => Interlocked.Read(ref _launches);

    /// <summary>Resident-kernel launches.</summary>
    internal long ResidentLaunches => Interlocked.Read(ref _residentLaunches);

    /// <summary>Times a running kernel was asked to stop early.</summary>
    internal long Stops => Interlocked.Read(ref _stops);

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

    /// <summary>Runs <paramref name="launch"/> (a blocking kernel launch) once nothing else runs and no callback holds the device.</summary>
    internal void Launch(Action launch)
    {
        lock (_gate)
        {
            WaitForIdleDeviceLocked(owner: null);
            // Clear the flag before claiming the device: if the device is gone this throws with nothing claimed.
            _setStopFlag(false);
            _running = true;
        }

        try
        {
            Interlocked.Increment(ref _launches);
            launch();
        }
        finally
        {
            lock (_gate)
            {
                _running = false;
                Monitor.PulseAll(_gate);
            }
        }
    }

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
                if (_disposed)
                {
                    throw new ObjectDisposedException(nameof(ExclusiveDevice));
                }

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
                if (!rung && _resident)
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
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            }

            throw new InvalidOperationException("the resident kernel returned while a batch was on it");
        }
    }

    /// <summary>Stops every kernel (waiting for a batch on the resident kernel to finish first) and holds launches back until <see cref="Resume"/>.</summary>
    internal void Quiesce()
    {
        lock (_gate)
        {
            _quiescers++;
            while (_running && !IsOneShotRunningLocked())
            {
                Monitor.Wait(_gate); // a batch on the resident kernel: it never waits for us, let it finish
            }

            if (_running)
            {
                Interlocked.Increment(ref _stops);
                _setStopFlag(true);
                while (_running)
                {
                    // Woken when the launch returns; between wake-ups the flag is raised again every poll interval,
                    // so a kernel whose first read of it raced with an earlier clear still sees it.
                    if (!Monitor.Wait(_gate, _stopPollInterval) && _running)
                    {
                        _setStopFlag(true);
                    }
                }
            }

            EndResidentLocked();
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

    /// <summary>Ends the launcher thread; call quiesced, after the last launch.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            EndResidentLocked();
            _disposed = true;
            Monitor.PulseAll(_gate);
        }

        _idleTimer?.Dispose();
        _launcherThread?.Join();
    }

    // A one-shot launch holds the device with no resident kernel live (it ended the resident kernel first).
    private bool IsOneShotRunningLocked() => _running && !_resident;

    /// <summary>Waits until the device is free for <paramref name="owner"/>'s resident kernel (or, with null, for a one-shot launch).</summary>
    private void WaitForIdleDeviceLocked(object? owner)
    {
        while (true)
        {
            if (_running || _quiescers > 0)
            {
                Monitor.Wait(_gate);
                continue;
            }

            if (_resident && (owner is null || _residentExiting || !ReferenceEquals(owner, _residentOwner)))
            {
                EndResidentLocked();
                continue;
            }

            return;
        }
    }

    /// <summary>Stops the resident kernel, if any, and waits for its launch to return. Called with no batch on it.</summary>
    private void EndResidentLocked()
    {
        if (!_resident)
        {
            return;
        }

        if (_pendingResidentLaunch is not null)
        {
            // Never launched: nothing to stop.
            _pendingResidentLaunch = null;
            ResidentGoneLocked(null);
            return;
        }

        // While we wait, the launch may return and the next resident kernel start (for another caller); raising the
        // flag again then would stop that one with a batch on it. Only this generation is ours to stop.
        var generation = _residentGeneration;
        _residentExiting = true;
        _setStopFlag(true);
        while (_resident && _residentGeneration == generation)
        {
            if (!Monitor.Wait(_gate, _stopPollInterval) && _resident && _residentGeneration == generation)
            {
                _setStopFlag(true);
            }
        }
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
            if (!_resident || _residentExiting || _disposed)
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
        _idleTimer!.Change(due < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : due, Timeout.InfiniteTimeSpan);
    }

    private void EnsureLauncherThreadLocked()
    {
        if (_launcherThread is not null)
        {
            return;
        }

        _launcherThread = new Thread(RunLauncher) { IsBackground = true, Name = "GpuExclusive resident kernel" };
        _launcherThread.Start();
    }

    private void RunLauncher()
    {
        while (true)
        {
            Action launch;
            lock (_gate)
            {
                while (_pendingResidentLaunch is null && !_disposed)
                {
                    Monitor.Wait(_gate);
                }

                if (_pendingResidentLaunch is null)
                {
                    return;
                }

                launch = _pendingResidentLaunch;
                _pendingResidentLaunch = null;
            }

            Exception? failure = null;
            try
            {
                Interlocked.Increment(ref _launches);
                Interlocked.Increment(ref _residentLaunches);
                launch();
            }
            catch (Exception e)
            {
                failure = e;
            }

            lock (_gate)
            {
                ResidentGoneLocked(failure);
            }
        }
    }
}
