using Microsoft.Extensions.Logging;

namespace GpuExclusive.Memory;

/// <summary>Source-generated log messages of the page pool: no formatting unless the level is enabled.</summary>
internal static partial class PoolLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Page pool: {Pages} frames ({Bytes} bytes) at 0x{Base:x}, mlocked={Mlocked}")]
    internal static partial void PoolCreated(ILogger logger, long pages, long bytes, nint @base, bool mlocked);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "Page pool: mlock of {Bytes} bytes failed (errno {Errno}); continuing with unpinned memory. Raise RLIMIT_MEMLOCK (ulimit -l) to pin it")]
    internal static partial void PoolMlockFailed(ILogger logger, long bytes, int errno);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "Page pool: not on Linux; frames come from NativeMemory.AlignedAlloc and are not pinned")]
    internal static partial void PoolNotPinned(ILogger logger);
}
