namespace GpuExclusive.Workloads;

/// <summary>
/// Demand-zero fault-in, per page: the first write to each of <see cref="Pages"/> pages of a fresh mapping — allocate a
/// frame from the pool, zero it, install the PTE — against Linux doing the same job
/// (<see cref="MinorFaultWorkload.WriteEach"/>).
/// </summary>
/// <remarks>Each operation needs a fresh mapping: <see cref="MapFresh"/> before, <see cref="Unmap"/> after, both untimed.</remarks>
internal sealed class DemandZeroWorkload : IDisposable
{
    internal const int Pages = 1024;
    private const ulong Bytes = (ulong)Pages * PagePool.PageSize;

    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private ulong _base;

    internal DemandZeroWorkload()
    {
        _pool = new PagePool(Pages);
        _space = new AddressSpace(_pool);
    }

    internal void MapFresh() => _base = _space.Map(Bytes, Protection.ReadWrite);

    internal void Unmap() => _space.Unmap(_base, Bytes);

    internal void WriteEach()
    {
        var space = _space;
        var at = _base;
        for (var i = 0; i < Pages; i++)
        {
            space.Write(at + ((ulong)i * PagePool.PageSize), i);
        }
    }

    public void Dispose()
    {
        _space.Dispose();
        _pool.Dispose();
    }
}
