using System.Diagnostics;

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
internal sealed partial class DeviceExecutor : IDisposable
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

    /// <summary>True while a caller has quiesced the device and no kernel runs (for DEBUG asserts of table swaps).</summary>
    internal bool IsQuiesced
    {
        get
        {
            lock (_gate)
            {
                return _quiescers > 0 && !_running;
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

            AssertInvariantsLocked();
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
    private bool IsOneShotRunningLocked()
    {
        Debug.Assert(Monitor.IsEntered(_gate), "the executor's state is guarded by _gate");
        return _running && !_resident;
    }

    /// <summary>Waits until the device is free for <paramref name="owner"/>'s resident kernel (or, with null, for a one-shot launch).</summary>
    /// <exception cref="DeviceFailedException">The device failed (before, or while ending the resident kernel).</exception>
    /// <exception cref="ObjectDisposedException">The device was disposed.</exception>
    private void WaitForIdleDeviceLocked(object? owner)
    {
        Debug.Assert(Monitor.IsEntered(_gate), "the executor's state is guarded by _gate");
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
    /// Waits (releasing the lock) until <paramref name="done"/>, calling <paramref name="everyPoll"/> at each poll
    /// interval, within the device's deadline. Returns null when done, or the failure declared when the deadline passed
    /// — the caller runs the failure callback once it has left the lock — and throws if another thread declared it.
    /// </summary>
    private DeviceFailedException? WaitForDeviceLocked(Func<bool> done, string what, Action? everyPoll = null)
    {
        Debug.Assert(Monitor.IsEntered(_gate), "the executor's state is guarded by _gate");
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
        AssertInvariantsLocked();
        return (failure, true);
    }

    /// <summary>The cross-field rules of the executor's state (DEBUG builds; under <c>_gate</c>).</summary>
    [Conditional("DEBUG")]
    private void AssertInvariantsLocked()
    {
        Debug.Assert(Monitor.IsEntered(_gate), "the executor's state is guarded by _gate");
        Debug.Assert(_quiescers >= 0, $"{_quiescers} quiescers");
        Debug.Assert(!_residentExiting || _resident, "only a live resident kernel can be exiting");
        Debug.Assert(_residentOwner is not null || !_resident || _pendingResidentLaunch is null, "a resident kernel about to start has an owner");
        Debug.Assert(_pendingResidentLaunch is null || _resident, "a pending resident launch is a resident kernel about to start");
        Debug.Assert(_pendingLaunch is null || (_running && !_resident), "a one-shot launch is handed over only while it owns the device, with no resident kernel");
    }
}
