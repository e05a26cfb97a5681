using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace GpuExclusive.Devices;

// One-shot launches: handed to the launcher thread, waited for with a deadline, their faults serviced meanwhile.
internal sealed partial class DeviceExecutor
{
    /// <summary>
    /// Runs <paramref name="launch"/> (a blocking kernel launch) on the launcher thread once nothing else runs and no
    /// callback holds the device, and waits for it to return, within the device's deadline. While it runs, the calling
    /// thread calls <paramref name="service"/> (the host's side of replayable device faults: it maps the pages the
    /// kernel waits for) as often as it finds work, and polls it at least once a millisecond otherwise.
    /// </summary>
    /// <param name="launch">The blocking launch, run on the launcher thread.</param>
    /// <param name="service">Called on the calling thread while the launch runs (see above).</param>
    /// <param name="prepare">
    /// Resets what the launch shares with the host that a previous launch left behind (the fault count and ring), once
    /// the device is free and before the launch is handed over or <paramref name="service"/> is first called — so the
    /// service never reads a previous launch's records as this one's. Runs under the executor's lock: memory writes only.
    /// </param>
    /// <exception cref="DeviceFailedException">The launch made no progress for the timeout, or the device had failed before.</exception>
    /// <remarks>
    /// An exception from <paramref name="service"/> raises the stop flag, so the kernel leaves early, and is thrown
    /// once the launch has returned: the device is never left running a kernel nobody waits for.
    /// </remarks>
    internal void Launch(Action launch, Func<bool>? service = null, Action? prepare = null)
    {
        long generation;
        lock (_gate)
        {
            WaitForIdleDeviceLocked(owner: null);
            // Clear the flag before claiming the device: if the device is gone this throws with nothing claimed.
            _setStopFlag(false);
            // No kernel runs (the device is idle, and held by this lock): the shared records are the next launch's.
            prepare?.Invoke();
            _running = true;
            Interlocked.Increment(ref _launches);
            generation = _launchGeneration;
            _launchError = null;
            _serviceSignal.Reset();
            _pendingLaunch = launch;
            AssertInvariantsLocked();
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

    private void EnsureLauncherThreadLocked()
    {
        Debug.Assert(Monitor.IsEntered(_gate), "the executor's state is guarded by _gate");
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
