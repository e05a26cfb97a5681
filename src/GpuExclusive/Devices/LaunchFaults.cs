using System.Runtime.CompilerServices;

namespace GpuExclusive.Devices;

/// <summary>
/// The device faults of one running launch, as the host services them while it runs (docs/architecture.md, "device
/// faults and the quantum"): the arrays the kernel works on, the part of its fault ring the host has taken, and the pages it still has
/// to map. Owned by the thread that runs the batch; the revocation path reads <see cref="Running"/> and the states.
/// </summary>
internal sealed class LaunchFaults
{
    /// <param name="batch">The batch (its ops name the slots).</param>
    /// <param name="states">The op states the kernel reads and writes: the batch's own, or the resident kernel's staging copy.</param>
    /// <param name="ring">The fault ring the kernel appends to (a power-of-two length).</param>
    /// <param name="stride">Threads the ops are dealt to: op i belongs to thread <c>i % stride</c>.</param>
    internal LaunchFaults(DeviceBatch batch, HostMappedArray<int> states, HostMappedArray<int> ring, int stride)
    {
        Batch = batch;
        States = states;
        Ring = ring;
        Stride = stride;
    }

    internal DeviceBatch Batch { get; }

    internal HostMappedArray<int> States { get; }

    internal HostMappedArray<int> Ring { get; }

    internal int Stride { get; }

    /// <summary>Ring entries taken so far (the kernel's fault count when the host caught up).</summary>
    internal int Consumed { get; set; }

    /// <summary>The kernel got more than a ring ahead of the host: some faults were lost, the batch is scanned after the launch.</summary>
    internal bool Overflowed { get; set; }

    /// <summary>Faulted pages not mapped yet, each with an op a thread waits on (the floor of its quantum).</summary>
    internal Dictionary<ulong, int> Wanted { get; } = [];

    /// <summary>True from before the kernel starts until it has returned (or reported the batch finished).</summary>
    internal bool Running
    {
        get => Volatile.Read(ref _running);
        set => Volatile.Write(ref _running, value);
    }

    private bool _running;

    /// <summary>The kernel thread op <paramref name="op"/> belongs to.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int OwnerOf(int op) => op % Stride;
}
