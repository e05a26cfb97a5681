using GpuExclusive.Kernels;

namespace GpuExclusive.Devices;

/// <summary>
/// The shared arrays of one <see cref="DeviceMirror.Run(ReadOnlySpan{AtomicOp}, Span{long})"/>: ops, per-op state and old value, fault buffer. Mirrors
/// keep finished batches for reuse, so a run allocates and registers nothing once warm.
/// </summary>
internal sealed class DeviceBatch : IDisposable
{
    internal DeviceBatch(ExclusiveDevice device, int capacity)
    {
        Capacity = capacity;
        Count = capacity;
        try
        {
            Ops = device.AllocateShared<DeviceOp>(capacity);
            States = device.AllocateShared<int>(capacity);
            OldValues = device.AllocateShared<long>(capacity);
            Faults = device.AllocateShared<int>(Math.Min(capacity, 4096));
        }
        catch
        {
            // Out of memory (or pinning refused) part way: free what was allocated, nobody else can.
            Dispose();
            throw;
        }
    }

    internal int Capacity { get; }

    /// <summary>Ops in the current use of the batch (at most <see cref="Capacity"/>); the kernel sees this many.</summary>
    internal int Count { get; private set; }

    /// <summary>True when the last launch returned because a callback raised the stop flag.</summary>
    internal bool Stopped { get; set; }

    /// <summary>Starts a use of the batch for <paramref name="count"/> ops: all pending.</summary>
    internal void Reset(int count)
    {
        Count = count;
        States.AsSpan(count).Clear();
        FaultCount = 0;
        Refused = 0;
        Stopped = false;
    }

    /// <summary>Ops the host marked <see cref="OpState.NotMapped"/> or <see cref="OpState.PermissionDenied"/> in this use.</summary>
    internal int Refused { get; set; }

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
        Ops?.Dispose();
        States?.Dispose();
        OldValues?.Dispose();
        Faults?.Dispose();
    }
}
