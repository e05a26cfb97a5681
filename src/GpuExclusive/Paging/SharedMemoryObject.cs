namespace GpuExclusive.Paging;

/// <summary>
/// The pages behind a <see cref="Sharing.Shared"/> mapping (Linux shmem for <c>MAP_SHARED|MAP_ANONYMOUS</c>):
/// every area that maps it — the original, its split pieces, forked children's copies — finds the same frame for a
/// page, so writes are seen by all. The object holds one reference on each frame it has.
/// </summary>
internal sealed class SharedMemoryObject(PagePool pool, long pages)
{
    private readonly PagePool _pool = pool;
    // Page → frame + 1; 0 = not allocated yet. Guarded by _lock.
    private readonly int[] _frames = new int[pages];
    private readonly Lock _lock = new();
    // Areas mapping the object; the last to go releases the frames. Changed under the mmap lock of some space.
    private int _users = 1;

    /// <summary>The frame for <paramref name="page"/>, allocating a zeroed one on first use.</summary>
    /// <exception cref="InsufficientMemoryException">The pool is exhausted (nothing changed).</exception>
    internal long GetOrAllocate(long page, Memory.FrameReservation? reservation)
    {
        lock (_lock)
        {
            var existing = _frames[page];
            if (existing != 0)
            {
                return existing - 1;
            }

            var frame = reservation?.Allocate() ?? _pool.Allocate();
            _frames[page] = (int)frame + 1;
            return frame;
        }
    }

    /// <summary>True when <paramref name="page"/> has a frame.</summary>
    internal bool Has(long page)
    {
        lock (_lock)
        {
            return _frames[page] != 0;
        }
    }

    /// <summary>Frames the object holds a reference on (for invariant checks).</summary>
    internal List<long> Frames()
    {
        lock (_lock)
        {
            return [.. _frames.Where(static f => f != 0).Select(static f => (long)f - 1)];
        }
    }

    internal void AddUser() => Interlocked.Increment(ref _users);

    /// <summary>Drops one area's use; the last releases every frame.</summary>
    internal void RemoveUser()
    {
        if (Interlocked.Decrement(ref _users) != 0)
        {
            return;
        }

        lock (_lock)
        {
            for (var i = 0; i < _frames.Length; i++)
            {
                if (_frames[i] != 0)
                {
                    _pool.Put(_frames[i] - 1);
                    _frames[i] = 0;
                }
            }
        }
    }
}
