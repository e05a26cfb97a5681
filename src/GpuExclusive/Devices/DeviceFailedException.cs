namespace GpuExclusive;

/// <summary>
/// A device stopped answering: a host wait on it (a launch, the resident kernel's report, a hazard word, a stop) saw no
/// progress for <see cref="EngineSettings.DeviceTimeoutMilliseconds"/>. The device is declared failed: every page it
/// held goes back to the CPU with everything already applied, and every later call on the device or its mirrors throws
/// this again. Other devices and the CPU are unaffected.
/// </summary>
public sealed class DeviceFailedException : Exception
{
    /// <summary>Creates the failure of <paramref name="deviceName"/>, found waiting for <paramref name="waitingFor"/>.</summary>
    public DeviceFailedException(string deviceName, string waitingFor, TimeSpan timeout)
        : base($"device '{deviceName}' stopped answering: no progress for {timeout.TotalMilliseconds:0} ms while the host waited for {waitingFor}; "
            + "it is declared failed, the pages it held go back to the CPU with everything already applied, and every later call on it throws this")
    {
        DeviceName = deviceName;
        WaitingFor = waitingFor;
        Timeout = timeout;
    }

    /// <summary>The failed device's name.</summary>
    public string DeviceName { get; }

    /// <summary>What the host was waiting for when it gave up (for example "a kernel launch to return").</summary>
    public string WaitingFor { get; }

    /// <summary>The deadline that passed.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>The same failure, thrown anew by a later call (a fresh stack trace, this one as the inner exception).</summary>
    internal DeviceFailedException Again() => new(DeviceName, WaitingFor, Timeout, this);

    private DeviceFailedException(string deviceName, string waitingFor, TimeSpan timeout, DeviceFailedException first)
        : base(first.Message, first)
    {
        DeviceName = deviceName;
        WaitingFor = waitingFor;
        Timeout = timeout;
    }
}
