namespace GpuExclusive.Memory;

/// <summary>
/// Frames set aside before a multi-page operation starts, so that it cannot run out of memory half-way:
/// either the whole reservation is granted up front or the operation fails with nothing changed.
/// </summary>
internal sealed class FrameReservation(PagePool pool, long count) : IDisposable
{
    private long _remaining = count;

    /// <summary>Reserves <paramref name="count"/> frames or throws, naming <paramref name="operation"/>.</summary>
    internal static FrameReservation Take(PagePool pool, long count, string operation)
    {
        if (count > 0 && !pool.TryReserve(count))
        {
            throw new InsufficientMemoryException($"{operation} needs up to {count} free frames; the pool has {pool.FreePages}");
        }

        return new FrameReservation(pool, count);
    }

    /// <summary>A zeroed frame from the reservation, or from the pool once the reservation is used up.</summary>
    internal long Allocate()
    {
        if (_remaining > 0)
        {
            _remaining--;
            return pool.AllocateReserved();
        }

        return pool.Allocate();
    }

    /// <summary>Returns the frames not used.</summary>
    public void Dispose()
    {
        var unused = Interlocked.Exchange(ref _remaining, 0);
        if (unused > 0)
        {
            pool.CancelReservation(unused);
        }
    }
}
