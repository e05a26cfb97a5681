namespace GpuExclusive;

/// <summary>One invalidation: the byte range <c>[Start, End)</c>, the event, and for <see cref="NotifierEvent.Exclusive"/> the device that caused it.</summary>
public readonly record struct NotifierRange(ulong Start, ulong End, NotifierEvent Event, object? Owner = null)
{
    /// <summary>True when <c>[start, end)</c> overlaps this range.</summary>
    public bool Overlaps(ulong start, ulong end) => start < End && Start < end;
}
