using Microsoft.Extensions.Logging;

namespace GpuExclusive;

/// <summary>Pinned, page-aligned host memory for a fixed number of 4096-byte frames: the engine's physical memory.</summary>
public sealed class PagePool : IDisposable
{
    /// <summary>Bytes in a page and in a frame.</summary>
    public const int PageSize = 4096;

    /// <summary>Creates a pool of <paramref name="capacityPages"/> frames.</summary>
    public PagePool(long capacityPages, ILoggerFactory? loggerFactory = null) => throw new NotImplementedException();

    /// <summary>Frames in the pool.</summary>
    public long Capacity => throw new NotImplementedException();

    /// <summary>Frames free for allocation now.</summary>
    public long FreePages => throw new NotImplementedException();

    /// <inheritdoc />
    public void Dispose() => throw new NotImplementedException();
}
