namespace GpuExclusive.Cli.Stress;

/// <summary>Collects invariant violations from every thread; the first one is what the user sees.</summary>
internal sealed class ViolationLog
{
    private string? _first;
    private long _count;

    public string? First => Volatile.Read(ref _first);

    public long Count => Interlocked.Read(ref _count);

    /// <summary>Records a violation; returns true if it was the first.</summary>
    public bool Report(string message)
    {
        Interlocked.Increment(ref _count);
        return Interlocked.CompareExchange(ref _first, message, null) is null;
    }
}
