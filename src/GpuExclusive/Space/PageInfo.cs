namespace GpuExclusive;

/// <summary>A snapshot of one virtual page, as <c>/proc/pid/pagemap</c> plus the frame's counters would show it.</summary>
/// <param name="State">What the page table holds.</param>
/// <param name="Writable">The PTE allows writes without a fault.</param>
/// <param name="Dirty">The PTE (or, for a device-exclusive entry, the frame) is dirty.</param>
/// <param name="Young">The PTE was accessed since it was installed or last aged.</param>
/// <param name="SoftDirty">Written since the last <see cref="AddressSpace.ClearSoftDirty"/>.</param>
/// <param name="Frame">The frame number, or -1 when none.</param>
/// <param name="MapCount">How many PTEs (present or device-exclusive) map the frame.</param>
/// <param name="RefCount">References to the frame (each mapping holds one).</param>
public readonly record struct PageInfo(
    PageState State,
    bool Writable,
    bool Dirty,
    bool Young,
    bool SoftDirty,
    long Frame,
    int MapCount,
    int RefCount);
