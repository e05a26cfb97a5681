using GpuExclusive.Kernels;

namespace GpuExclusive.Devices;

/// <summary>The shared arrays of one <see cref="DeviceMirror.Run"/>: ops, per-op state and old value, fault buffer.</summary>
internal sealed class DeviceBatch : IDisposable
{
    internal DeviceBatch(ExclusiveDevice device, int count)
    {
        Count = count;
        Ops = device.AllocateShared<DeviceOp>(count);
        States = device.AllocateShared<int>(count);
        OldValues = device.AllocateShared<long>(count);
        Faults = device.AllocateShared<int>(Math.Min(count, 4096));
    }

    internal int Count { get; }

    internal HostMappedArray<DeviceOp> Ops { get; }

    /// <summary><see cref="OpState"/> per op.</summary>
    internal HostMappedArray<int> States { get; }

    internal HostMappedArray<long> OldValues { get; }

    /// <summary>Slots of device faults of the last launch (the first <c>Faults.Length</c> of them).</summary>
    internal HostMappedArray<int> Faults { get; }

    /// <summary>Device faults the last launch counted; more than <c>Faults.Length</c> means the buffer overflowed.</summary>
    internal int FaultCount { get; set; }

    public void Dispose()
    {
        Ops.Dispose();
        States.Dispose();
        OldValues.Dispose();
        Faults.Dispose();
    }
}
