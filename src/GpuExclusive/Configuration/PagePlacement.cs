namespace GpuExclusive;

/// <summary>
/// Where a device works on a page it holds exclusively (docs/architecture.md, "device-resident pages"). Chosen per
/// mirror (<see cref="ExclusiveDevice.Mirror(AddressSpace, PagePlacement)"/>), defaulting to
/// <see cref="EngineSettings.PagePlacement"/>. Both placements keep every rule of device-exclusive access; they differ
/// only in where the atomics land and what a grant and a revocation cost.
/// </summary>
public enum PagePlacement
{
    /// <summary>
    /// The kernels apply atomics to the page's frame in host memory, zero-copy through the pinned pool (on a GPU, across
    /// PCIe). A grant and a revocation move no data.
    /// </summary>
    InPlace,

    /// <summary>
    /// A grant copies the page into the device's own memory and the kernels apply atomics there, at device-memory speed;
    /// a revocation copies it back to its frame before the CPU gets it. Device memory for such pages is bounded
    /// (<see cref="EngineSettings.DeviceResidentPages"/>): past it the least recently used page is handed back to the CPU.
    /// On ILGPU's CPU accelerator the pages go to a separate accelerator buffer, so the same protocol runs.
    /// </summary>
    DeviceResident,
}
