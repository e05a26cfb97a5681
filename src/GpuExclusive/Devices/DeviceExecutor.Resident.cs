using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace GpuExclusive.Devices;

// The resident kernel: launched on first use, rung by batches through the doorbell, stopped when idle, displaced, or
// quiesced; on the CPU accelerator one device in the process holds the residency at a time.
internal sealed partial class DeviceExecutor
{
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
            AssertInvariantsLocked();
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
    /// Stops the resident kernel, if any, and waits for its launch to return. Called with no batch on it. Returns the
    /// failure declared if it did not return in time (the caller runs the failure callback outside the lock).
    /// </summary>
    private DeviceFailedException? EndResidentLocked()
    {
        Debug.Assert(Monitor.IsEntered(_gate), "the executor's state is guarded by _gate");
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

    private void ResidentGoneLocked(Exception? failure)
    {
        Debug.Assert(Monitor.IsEntered(_gate), "the executor's state is guarded by _gate");
        if (_sharesCpuResidency)
        {
            Interlocked.CompareExchange(ref s_cpuResidentHolder, null, this);
        }

        _resident = false;
        _residentExiting = false;
        _residentOwner = null;
        _residentFailure = failure;
        Monitor.PulseAll(_gate);
        AssertInvariantsLocked();
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
        Debug.Assert(Monitor.IsEntered(_gate), "the executor's state is guarded by _gate");
        // A timer has millisecond resolution: a shorter due time fires at once, and a timer re-armed that way while
        // batches keep coming would spin a pool thread. On the CPU accelerator the kernel leaves by itself after its
        // idle polls anyway; this timer is what stops it on a GPU.
        _idleArmed = true;
        _idleTimer!.Change(due < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : due, System.Threading.Timeout.InfiniteTimeSpan);
    }
}
