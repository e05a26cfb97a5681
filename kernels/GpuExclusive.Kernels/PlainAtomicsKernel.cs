using ILGPU;

namespace GpuExclusive.Kernels;

/// <summary>
/// The baselines device atomics through the engine are measured against (docs/benchmarks.md): one 32-bit add per
/// index, with no page table, no states, no hazard words and no faults — only the atomic. Run over device memory it is
/// what the device can do at all; over host-mapped memory, with its indices in device memory, it is the ceiling of
/// in-place atomics, where nothing but the atomic crosses PCIe.
/// </summary>
internal static class PlainAtomicsKernel
{
    /// <summary>Adds 1 to <c>target[indices[i]]</c> for each <paramref name="i"/>.</summary>
    public static void AddOne(Index1D i, ArrayView<int> indices, ArrayView<int> target) => Atomic.Add(ref target[indices[i]], 1);
}
