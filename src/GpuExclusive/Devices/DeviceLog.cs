using Microsoft.Extensions.Logging;

namespace GpuExclusive.Devices;

/// <summary>Source-generated log messages of the device layer.</summary>
internal static partial class DeviceLog
{
    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "Exclusive device opened: {Kind} '{Name}', grid {Groups}×{GroupSize} threads ({Reason})")]
    internal static partial void Opened(ILogger logger, AcceleratorKind kind, string name, int groups, int groupSize, string reason);

    [LoggerMessage(EventId = 201, Level = LogLevel.Debug, Message = "Batch of {Ops} ops: {Completed} applied, {Faults} device faults, {Replays} replays")]
    internal static partial void BatchDone(ILogger logger, int ops, long completed, long faults, long replays);

    [LoggerMessage(EventId = 202, Level = LogLevel.Debug, Message = "Mirror of space {SpaceId}: invalidated {Pages} device PTEs for {Event} [0x{Start:x}, 0x{End:x})")]
    internal static partial void Invalidated(ILogger logger, int spaceId, int pages, NotifierEvent @event, ulong start, ulong end);

    [LoggerMessage(EventId = 203, Level = LogLevel.Error, Message = "Device '{Name}' declared failed: no progress for {TimeoutMs} ms while the host waited for {WaitingFor}; its pages go back to the CPU")]
    internal static partial void Failed(ILogger logger, string name, string waitingFor, double timeoutMs);

    [LoggerMessage(EventId = 204, Level = LogLevel.Warning, Message = "Device '{Name}' disposed while its failed kernel still runs: its launcher thread, shared memory and accelerator are freed only if that kernel ever returns")]
    internal static partial void LeftBehind(ILogger logger, string name);

    [LoggerMessage(EventId = 205, Level = LogLevel.Error, Message = "Device '{Name}': freeing a {What} failed")]
    internal static partial void FreeFailed(ILogger logger, string name, string what, Exception exception);

    [LoggerMessage(EventId = 206, Level = LogLevel.Error, Message = "Device '{Name}': giving its pages back to the CPU after its failure failed")]
    internal static partial void GiveBackFailed(ILogger logger, string name, Exception exception);

    [LoggerMessage(EventId = 210, Level = LogLevel.Debug, Message = "Pinned host range [0x{Start:x}, 0x{End:x}) through the primary context of device {Device}")]
    internal static partial void Pinned(ILogger logger, ulong start, ulong end, int device);

    [LoggerMessage(EventId = 211, Level = LogLevel.Debug, Message = "Unpinned host range [0x{Start:x}, 0x{End:x}) (device {Device}): its last lease was released")]
    internal static partial void Unpinned(ILogger logger, ulong start, ulong end, int device);

    [LoggerMessage(EventId = 212, Level = LogLevel.Warning, Message = "Unpinning host range [0x{Start:x}, 0x{End:x}) (device {Device}) failed with error {Code}: {Error}. The range is forgotten; it may stay page-locked until the process exits")]
    internal static partial void UnpinFailed(ILogger logger, ulong start, ulong end, int device, int code, string error);

    [LoggerMessage(EventId = 213, Level = LogLevel.Warning, Message = "Releasing the primary context of device {Device} failed with error {Code}: {Error}")]
    internal static partial void PrimaryContextReleaseFailed(ILogger logger, int device, int code, string error);

    [LoggerMessage(EventId = 214, Level = LogLevel.Error, Message = "Releasing the lease on pinned host range [0x{Start:x}, 0x{End:x}) threw; ignored, since a dispose (possibly on the finalizer thread) must not throw")]
    internal static partial void ReleaseThrew(ILogger logger, Exception exception, ulong start, ulong end);
}
