namespace GpuExclusive.Cli.Stress;

/// <summary>What the devices and the engine did during a run (racy while it runs, exact after it).</summary>
/// <param name="Devices">Devices opened.</param>
/// <param name="Batches">Atomic batches run.</param>
/// <param name="Ops">Atomic ops in those batches (all completed, or the run reported a violation).</param>
/// <param name="PermutationOps">Of those, Add(1) ops on the devices' dedicated counters.</param>
/// <param name="GrantedByCalls">Pages MakeExclusive calls of the device threads reported granted.</param>
/// <param name="BatchDeviceFaults">Device faults the batches reported (<see cref="BatchResult.DeviceFaults"/>).</param>
/// <param name="BatchReplays">Replays the batches reported (<see cref="BatchResult.Replays"/>).</param>
/// <param name="Grants">The engine's <c>gpux.exclusive.grants</c>: every page made device-exclusive (calls and faults).</param>
/// <param name="Revocations">The engine's <c>gpux.exclusive.revocations</c>: entries restored by a CPU access or fork.</param>
/// <param name="DeviceFaults">The engine's <c>gpux.device.faults</c>.</param>
/// <param name="Replays">The engine's <c>gpux.device.replays</c>.</param>
/// <param name="TouchRevocations">CPU touches by the toucher thread that found a device-exclusive entry.</param>
/// <param name="PressureDiscards">Discards by the pool-pressure thread (<c>--inject</c>).</param>
/// <param name="InjectedDelays">Short delays injected into invalidations (<c>--inject</c>).</param>
/// <param name="InjectedLingers">Long delays injected while a page lock was held (<c>--inject</c>).</param>
/// <param name="BatchLatency">Wall time of one <see cref="DeviceMirror.Run(ReadOnlySpan{AtomicOp}, Span{long})"/>, faults and replays included.</param>
/// <param name="RevocationLatency">A CPU read that found a device-exclusive entry, revocation included.</param>
internal sealed record DeviceTotals(
    int Devices, long Batches, long Ops, long PermutationOps, long GrantedByCalls, long BatchDeviceFaults, long BatchReplays,
    long Grants, long Revocations, long DeviceFaults, long Replays, long TouchRevocations, long PressureDiscards,
    long InjectedDelays, long InjectedLingers, LatencySummary BatchLatency, LatencySummary RevocationLatency);
