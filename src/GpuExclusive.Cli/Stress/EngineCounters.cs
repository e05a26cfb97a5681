using System.Diagnostics.Metrics;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// Listens to the engine's <c>GpuExclusive</c> meter for the counters a run reports: grants, revocations, device
/// faults and replays. The meter is process-wide, so the counts include every engine user in the process (in gpux,
/// only the run itself).
/// </summary>
internal sealed class EngineCounters : IDisposable
{
    private readonly MeterListener _listener = new();
    private long _grants;
    private long _revocations;
    private long _deviceFaults;
    private long _replays;

    public EngineCounters()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "GpuExclusive" && Target(instrument.Name) is not null)
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            switch (instrument.Name)
            {
                case "gpux.exclusive.grants": Interlocked.Add(ref _grants, value); break;
                case "gpux.exclusive.revocations": Interlocked.Add(ref _revocations, value); break;
                case "gpux.device.faults": Interlocked.Add(ref _deviceFaults, value); break;
                case "gpux.device.replays": Interlocked.Add(ref _replays, value); break;
            }
        });
        _listener.Start();
    }

    public long Grants => Interlocked.Read(ref _grants);

    public long Revocations => Interlocked.Read(ref _revocations);

    public long DeviceFaults => Interlocked.Read(ref _deviceFaults);

    public long Replays => Interlocked.Read(ref _replays);

    public void Dispose() => _listener.Dispose();

    private static string? Target(string name) => name is "gpux.exclusive.grants" or "gpux.exclusive.revocations" or "gpux.device.faults" or "gpux.device.replays" ? name : null;
}
