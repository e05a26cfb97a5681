using System.Diagnostics;

namespace GpuExclusive.Devices;

/// <summary>
/// The bound on one host wait for a device (docs/architecture.md, "bounded waits"): it expires once the device has
/// shown no progress for the timeout. Progress is the kernels' heartbeat words, bumped at every stop poll, so a batch
/// that takes minutes but moves is never mistaken for a device that stopped.
/// </summary>
/// <remarks>
/// Heartbeats are read only at checkpoints, every half timeout (reading them walks one word per kernel thread): the
/// first checkpoint takes a baseline, and the wait expires at a checkpoint that finds them unchanged since the last one
/// once a whole timeout has passed since progress was last seen (or since the wait began). Without a heartbeat source
/// the wait simply expires after the timeout.
/// </remarks>
internal struct DeviceDeadline
{
    private const int SpinsBetweenClockReads = 64;

    private readonly long _timeoutTicks;
    private readonly Func<long>? _heartbeat;
    private long _lastProgress;
    private long _nextCheckpoint;
    private long _beats;
    private bool _haveBeats;
    private int _spins;

    internal DeviceDeadline(TimeSpan timeout, Func<long>? heartbeat)
    {
        _timeoutTicks = Math.Max(1, (long)(timeout.TotalSeconds * Stopwatch.Frequency));
        _heartbeat = heartbeat;
        _lastProgress = Stopwatch.GetTimestamp();
        _nextCheckpoint = _lastProgress + (heartbeat is null ? _timeoutTicks : Math.Max(1, _timeoutTicks / 2));
    }

    /// <summary>For a spinning waiter: reads the clock only every few calls.</summary>
    internal bool ExpiredWhileSpinning() => ++_spins % SpinsBetweenClockReads == 0 && Expired();

    /// <summary>True when the device made no progress for the timeout.</summary>
    internal bool Expired()
    {
        var now = Stopwatch.GetTimestamp();
        if (now < _nextCheckpoint)
        {
            return false;
        }

        if (_heartbeat is null)
        {
            return true;
        }

        var beats = _heartbeat();
        if (!_haveBeats || beats != _beats)
        {
            if (_haveBeats)
            {
                _lastProgress = now;
            }

            _beats = beats;
            _haveBeats = true;
        }
        else if (now - _lastProgress >= _timeoutTicks)
        {
            return true;
        }

        _nextCheckpoint = now + Math.Max(1, _timeoutTicks / 2);
        return false;
    }

    /// <summary>How long a blocking waiter may sleep before it should call <see cref="Expired"/> again.</summary>
    internal readonly TimeSpan UntilCheckpoint =>
        TimeSpan.FromSeconds(Math.Max(0, _nextCheckpoint - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);
}
