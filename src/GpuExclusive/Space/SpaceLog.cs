using Microsoft.Extensions.Logging;

namespace GpuExclusive;

/// <summary>Source-generated log messages of the address space: no formatting unless the level is enabled.</summary>
internal static partial class SpaceLog
{
    [LoggerMessage(EventId = 110, Level = LogLevel.Debug, Message = "Address space {SpaceId}: mapped [0x{Start:x}, 0x{End:x}) {Protection} {Sharing}")]
    internal static partial void Mapped(ILogger logger, int spaceId, ulong start, ulong end, Protection protection, Sharing sharing);

    [LoggerMessage(EventId = 111, Level = LogLevel.Debug, Message = "Address space {SpaceId}: unmapped [0x{Start:x}, 0x{End:x}), {Frames} frames released")]
    internal static partial void Unmapped(ILogger logger, int spaceId, ulong start, ulong end, int frames);

    [LoggerMessage(EventId = 112, Level = LogLevel.Debug, Message = "Address space {SpaceId}: forked into {ChildId}, {Shared} frames shared copy-on-write")]
    internal static partial void Forked(ILogger logger, int spaceId, int childId, int shared);

    [LoggerMessage(EventId = 113, Level = LogLevel.Debug, Message = "Address space {SpaceId}: disposed, {Frames} frames released")]
    internal static partial void SpaceDisposed(ILogger logger, int spaceId, int frames);

    [LoggerMessage(EventId = 120, Level = LogLevel.Trace, Message = "Address space {SpaceId}: {Kind} fault at 0x{Address:x} (write={IsWrite})")]
    internal static partial void Fault(ILogger logger, int spaceId, string kind, ulong address, bool isWrite);
}
