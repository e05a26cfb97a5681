using System.Diagnostics;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// What one thread of a run is doing, for the watchdog: the operation it started last, at which address, and since
/// when. Written only by its thread with plain stores of constant strings (no allocation per operation); read racily by
/// the watchdog, which only needs a recent value.
/// </summary>
internal sealed class ThreadActivity(string thread)
{
    private string _operation = "starting";
    private ulong _address;
    private long _since = Stopwatch.GetTimestamp();
    private long _operations;
    private volatile bool _finished;

    public string Thread { get; } = thread;

    public bool Finished => _finished;

    public long Operations => Volatile.Read(ref _operations);

    /// <summary>Marks the start of an operation; <paramref name="operation"/> should be a constant string.</summary>
    public void Enter(string operation, ulong address = 0)
    {
        Volatile.Write(ref _operation, operation);
        Volatile.Write(ref _address, address);
        Volatile.Write(ref _since, Stopwatch.GetTimestamp());
        Volatile.Write(ref _operations, _operations + 1);
    }

    public void Finish()
    {
        Enter("finished");
        _finished = true;
    }

    /// <summary>How long the current operation has been running.</summary>
    public TimeSpan Busy => Stopwatch.GetElapsedTime(Volatile.Read(ref _since));

    public string Describe()
    {
        string operation = Volatile.Read(ref _operation);
        ulong address = Volatile.Read(ref _address);
        string at = address == 0 ? string.Empty : $" at 0x{address:x}";
        return $"{Thread}: {operation}{at} for {Busy.TotalSeconds:0.000} s ({Operations:N0} operations so far){(Finished ? ", finished" : string.Empty)}";
    }
}
