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
}
