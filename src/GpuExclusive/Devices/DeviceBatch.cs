using System.Diagnostics;
using GpuExclusive.Kernels;
using ILGPU;
using ILGPU.Runtime;

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
            Faults = device.AllocateShared<int>(RingLength(capacity));
        }
        catch
        {
            // Out of memory (or pinning refused) part way: free what was allocated, nobody else can.
            Dispose();
            throw;
        }
    }

    internal int Capacity { get; }

    /// <summary>
    /// The fault ring's length: a power of two (the kernel indexes it with a mask), at most 4096 — a thread records at
    /// most one fault at a time, and a lapped ring only costs a scan after the launch.
    /// </summary>
    private static int RingLength(int capacity) => (int)Math.Min(4096, Math.Max(64, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)capacity)));

    /// <summary>Ops in the current use of the batch (at most <see cref="Capacity"/>); the kernel sees this many.</summary>
    internal int Count { get; private set; }

    /// <summary>True when the last launch returned because a callback raised the stop flag.</summary>
    internal bool Stopped { get; set; }

    /// <summary>Starts a use of the batch for <paramref name="count"/> ops: all pending.</summary>
    internal void Reset(int count)
    {
        Count = count;
        States.AsSpan(count).Clear();
        if (FaultCount != 0)
        {
            Faults.AsSpan((int)Faults.Length).Clear(); // entries a launch left untaken
        }

        FaultCount = 0;
        Refused = 0;
        Stopped = false;
        LeftPending = false;
        Launch = null;
        HoldSlots.Clear();
        RunEnded = false;
        StartedAt = Stopwatch.GetTimestamp();
    }

    /// <summary>
    /// When this use of the batch started (a <see cref="Stopwatch"/> timestamp): resident pages it used since are not
    /// evicted to make room for its own grants.
    /// </summary>
    internal long StartedAt { get; private set; }

    /// <summary>True when the last launch left ops pending that it recorded no fault for the host to service: scan for them.</summary>
    internal bool LeftPending { get; set; }

    /// <summary>The faults of the launch running the batch now, or of its last one.</summary>
    internal LaunchFaults? Launch { get; set; }

    /// <summary>Slots granted for this use of the batch with a quantum (their holds are dropped when the run ends).</summary>
    internal List<int> HoldSlots { get; } = [];

    /// <summary>
    /// True once this use's holds were dropped (set under the mirror lock as the run ends; cleared by <see cref="Reset"/>):
    /// a grant that lands later — a CPU thread's page return that was already under way — must not add a hold, which
    /// nothing would ever drop.
    /// </summary>
    internal bool RunEnded { get; set; }

    /// <summary>Ops the host marked <see cref="OpState.NotMapped"/> or <see cref="OpState.PermissionDenied"/> in this use.</summary>
    internal int Refused { get; set; }

    internal HostMappedArray<DeviceOp> Ops { get; }

    /// <summary><see cref="OpState"/> per op.</summary>
    internal HostMappedArray<int> States { get; }

    internal HostMappedArray<long> OldValues { get; }

    /// <summary>The fault ring a launch of this batch appends to (op index + 1 per entry; see <see cref="ControlBlock.FaultCount"/>).</summary>
    internal HostMappedArray<int> Faults { get; }

    /// <summary>Device faults the last launch recorded.</summary>
    internal int FaultCount { get; set; }

    /// <summary>
    /// The ops in the device's own memory, for launches that keep the bookkeeping there (null until the first such
    /// launch; see <see cref="EngineSettings.BookkeepingInDeviceMemory"/>).
    /// </summary>
    internal MemoryBuffer1D<DeviceOp, Stride1D.Dense>? DeviceOps { get; private set; }

    /// <summary>The old values in the device's own memory, written by the kernel and copied out after each launch.</summary>
    internal MemoryBuffer1D<long, Stride1D.Dense>? DeviceOldValues { get; private set; }

    /// <summary>
    /// True when <see cref="Ops"/> changed since they were last copied to <see cref="DeviceOps"/>: set by every fill,
    /// so a prepared batch, filled once, copies its ops once.
    /// </summary>
    internal bool DeviceOpsStale { get; set; } = true;

    /// <summary>Allocates <see cref="DeviceOps"/> and <see cref="DeviceOldValues"/> on <paramref name="accelerator"/>, if not yet.</summary>
    internal void EnsureDeviceBookkeeping(Accelerator accelerator)
    {
        if (DeviceOps is null)
        {
            DeviceOps = accelerator.Allocate1D<DeviceOp>(Capacity);
            DeviceOldValues = accelerator.Allocate1D<long>(Capacity);
            DeviceOpsStale = true;
        }
    }

    public void Dispose()
    {
        DeviceOps?.Dispose();
        DeviceOldValues?.Dispose();
        Ops?.Dispose();
        States?.Dispose();
        OldValues?.Dispose();
        Faults?.Dispose();
    }
}
