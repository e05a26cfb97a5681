using ILGPU;

namespace GpuExclusive.Kernels;

/// <summary>
/// A kernel parameter for an array the host reads or writes while a kernel may run: the view (what the CPU
/// accelerator's <see cref="CpuAcceleratorScope"/> accesses through <see cref="Atomic"/>) and the device address of its
/// first element (what <see cref="SystemScope"/> hands to inline PTX, since a kernel cannot take the address of a view
/// element). The host builds both from the same host-mapped buffer.
/// </summary>
/// <typeparam name="T">The element type: <see cref="int"/> or <see cref="long"/>.</typeparam>
internal struct SharedView<T>
    where T : unmanaged
{
    /// <summary>The elements, as ILGPU's own loads and atomics see them.</summary>
    public ArrayView<T> View;

    /// <summary>The device address of <c>View[0]</c> (from <c>cuMemHostGetDevicePointer</c> on CUDA; unused on the CPU accelerator).</summary>
    public long DeviceAddress;

    /// <summary>Elements in the view.</summary>
    public readonly long Length => View.Length;
}
