namespace GpuExclusive;

/// <summary>Counts for one <c>DeviceMirror.Run</c> batch.</summary>
/// <param name="Completed">Ops applied (each exactly once).</param>
/// <param name="NotMapped">Ops whose address no mapping covers.</param>
/// <param name="PermissionDenied">Ops the mapping forbids.</param>
/// <param name="DeviceFaults">Device faults recorded and serviced.</param>
/// <param name="Replays">Kernel launches after the first.</param>
public readonly record struct BatchResult(long Completed, long NotMapped, long PermissionDenied, long DeviceFaults, long Replays);
