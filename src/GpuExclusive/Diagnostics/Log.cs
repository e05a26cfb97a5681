using Microsoft.Extensions.Logging;

namespace GpuExclusive.Diagnostics;

/// <summary>Source-generated log messages: no formatting unless the level is enabled.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Page pool: {Pages} frames ({Bytes} bytes) at 0x{Base:x}, mlocked={Mlocked}")]
    internal static partial void PoolCreated(ILogger logger, long pages, long bytes, nint @base, bool mlocked);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "Page pool: mlock of {Bytes} bytes failed (errno {Errno}); continuing with unpinned memory. Raise RLIMIT_MEMLOCK (ulimit -l) to pin it")]
    internal static partial void PoolMlockFailed(ILogger logger, long bytes, int errno);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "Page pool: not on Linux; frames come from NativeMemory.AlignedAlloc and are not pinned")]
    internal static partial void PoolNotPinned(ILogger logger);

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
