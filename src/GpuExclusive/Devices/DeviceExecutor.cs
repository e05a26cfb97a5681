using System.Diagnostics;

namespace GpuExclusive.Devices;

/// <summary>
/// Runs one kernel at a time on a device and lets invalidation callbacks stop it: <see cref="Quiesce"/> raises the
/// stop flag the kernels poll, waits until the running launch has returned, and holds further launches back until
/// <see cref="Resume"/>. This is the "stop the device before the callback returns" of DESIGN §3.2.
/// </summary>
internal sealed class DeviceExecutor(Action<bool> setStopFlag, TimeSpan stopPollInterval)
{
    // Guards _running and _quiescers; launchers and quiescers wait on it.
    private readonly object _gate = new();
    private bool _running;
    private int _quiescers;
    private long _launches;
    private long _stops;

    internal long Launches => Interlocked.Read(ref _launches);

    /// <summary>Times a running kernel was asked to stop early.</summary>
    internal long Stops => Interlocked.Read(ref _stops);

    /// <summary>Runs <paramref name="launch"/> (a blocking kernel launch) once no other launch runs and no callback holds the device.</summary>
    internal void Launch(Action launch)
    {
        lock (_gate)
        {
            while (_running || _quiescers > 0)
            {
                Monitor.Wait(_gate);
            }

            // Clear the flag before claiming the device: if the device is gone this throws with nothing claimed.
            setStopFlag(false);
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

    /// <summary>Stops the running kernel, if any, waits for it to return, and holds launches back until <see cref="Resume"/>.</summary>
    internal void Quiesce()
    {
        lock (_gate)
        {
            _quiescers++;
            if (_running)
            {
                Interlocked.Increment(ref _stops);
                setStopFlag(true);
                while (_running)
                {
                    // Woken when the launch returns; between wake-ups the flag is raised again every poll interval,
                    // so a kernel whose first read of it raced with an earlier clear still sees it.
                    if (!Monitor.Wait(_gate, stopPollInterval) && _running)
                    {
                        setStopFlag(true);
                    }
                }
            }
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
}
