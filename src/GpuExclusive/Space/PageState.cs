namespace GpuExclusive;

/// <summary>What the page table holds for one virtual page.</summary>
public enum PageState
{
    /// <summary>No mapping covers the address.</summary>
    Unmapped,
    /// <summary>Mapped, but no frame is present yet (or it was discarded).</summary>
    NotPresent,
    /// <summary>A present PTE maps a frame.</summary>
    Present,
    /// <summary>A non-present device-exclusive entry: a device holds the frame for atomics.</summary>
    DeviceExclusive,
}
