using GpuExclusive.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuExclusive.Devices;

/// <summary>
/// A device's plain-atomics baseline (<see cref="PlainAtomicsKernel"/>) for the benchmarks: fixed indices in device
/// memory, applied to a target either in device memory (what the device can do) or in host-mapped memory (the
/// ceiling of in-place atomics: only the atomic crosses PCIe). Launches go through the device's executor, one kernel
/// at a time with the engine's.
/// </summary>
internal sealed class PlainAtomicsBaseline : IDisposable
{
    private readonly ExclusiveDevice _device;
    private readonly Action<Index1D, ArrayView<int>, ArrayView<int>> _kernel;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _indices;
    private readonly MemoryBuffer1D<int, Stride1D.Dense>? _deviceTarget;
    private readonly HostMappedArray<int>? _hostTarget;

    /// <param name="device">The device to run on.</param>
    /// <param name="indices">Which int of the target each op adds 1 to.</param>
    /// <param name="targetInts">Ints in the target.</param>
    /// <param name="hostMapped">True: the target is host-mapped memory; false: the device's own.</param>
    internal PlainAtomicsBaseline(ExclusiveDevice device, ReadOnlySpan<int> indices, int targetInts, bool hostMapped)
    {
        foreach (var index in indices)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(index, nameof(indices));
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, targetInts, nameof(indices));
        }

        _device = device;
        var accelerator = device.Accelerator;
        _kernel = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<int>>(PlainAtomicsKernel.AddOne);
        _indices = accelerator.Allocate1D<int>(indices.Length);
        _indices.View.CopyFromCPU(accelerator.DefaultStream, in indices);
        accelerator.DefaultStream.Synchronize();
        if (hostMapped)
        {
            _hostTarget = device.AllocateShared<int>(targetInts);
        }
        else
        {
            _deviceTarget = accelerator.Allocate1D<int>(targetInts);
            _deviceTarget.MemSetToZero();
        }

        HostMapped = hostMapped;
    }

    /// <summary>True when the target is host-mapped memory.</summary>
    internal bool HostMapped { get; }

    /// <summary>Ops per launch.</summary>
    internal int Count => (int)_indices.Length;

    /// <summary>Applies every op once: one launch, returned when the device is done.</summary>
    internal void Run() => _device.Executor.Launch(() =>
    {
        var accelerator = _device.Accelerator;
        accelerator.Bind();
        ArrayView<int> target = _hostTarget is not null ? _hostTarget.View : _deviceTarget!.View.AsContiguous();
        _kernel(Count, _indices.View, target);
        accelerator.Synchronize();
    });

    /// <summary>The target's ints now (for checking a run's totals).</summary>
    internal int[] ReadTarget()
    {
        if (_hostTarget is not null)
        {
            return _hostTarget.AsSpan((int)_hostTarget.Length).ToArray();
        }

        var values = new int[_deviceTarget!.Length];
        var span = values.AsSpan();
        _deviceTarget.View.CopyToCPU(_device.Accelerator.DefaultStream, in span);
        _device.Accelerator.DefaultStream.Synchronize();
        return values;
    }

    public void Dispose()
    {
        _device.Retire(_indices);
        if (_deviceTarget is not null)
        {
            _device.Retire(_deviceTarget);
        }

        if (_hostTarget is not null)
        {
            _device.Retire(_hostTarget);
        }
    }
}
