namespace GpuExclusive;

/// <summary>One invalidation: the byte range <c>[Start, End)</c>, the event, and for <see cref="NotifierEvent.Exclusive"/> the device that caused it.</summary>
public readonly record struct NotifierRange(ulong Start, ulong End, NotifierEvent Event, object? Owner = null)
{
    /// <summary>
    /// True when the range's contents are thrown away with its mappings (an unmap, a discard, the teardown): a device
    /// that keeps its own copy of a page (<see cref="PagePlacement.DeviceResident"/>) need not write it back.
    /// </summary>
    public bool DropsContents { get; init; }

    /// <summary>True when <c>[start, end)</c> overlaps this range.</summary>
    public bool Overlaps(ulong start, ulong end) => start < End && Start < end;
}
