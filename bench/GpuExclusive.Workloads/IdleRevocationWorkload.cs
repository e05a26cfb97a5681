namespace GpuExclusive.Workloads;

/// <summary>
/// Revocation with the device idle: a CPU read of a device-exclusive page until its PTE is restored (fault, Clear
/// notifier, the device unmaps, restore), over <see cref="Pages"/> pages granted beforehand. DESIGN §7: ≤ 0.1× a Linux
/// minor fault (<see cref="MinorFaultWorkload"/>, measured alike).
/// </summary>
/// <remarks>Each operation needs its pages granted again first: <see cref="Grant"/>, untimed.</remarks>
internal sealed class IdleRevocationWorkload : IDisposable
{
    internal const int Pages = 256;
    private const ulong Bytes = (ulong)Pages * PagePool.PageSize;

    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private readonly DeviceMirror _mirror;
    private readonly ulong _address;

    /// <param name="device">The device that holds the pages (the caller's: it outlives the workload).</param>
    internal IdleRevocationWorkload(ExclusiveDevice device)
    {
        _pool = new PagePool(Pages + 64);
        _space = new AddressSpace(_pool);
        _address = _space.Map(Bytes, Protection.ReadWrite);
        _mirror = device.Mirror(_space);
    }

    internal void Grant() => _mirror.MakeExclusive(_address, Bytes);

    /// <summary>Reads every page: <see cref="Pages"/> revocations.</summary>
    internal int RevokeEach() => PageTouches.All(new EngineTouch(_space, _address), Pages);

    /// <summary><see cref="RevokeEach"/>, each revocation timed alone (ns per revocation into <paramref name="samples"/>).</summary>
    internal int TimeEachRevocation(List<double> samples) => PageTouches.TimeEach(new EngineTouch(_space, _address), Pages, samples);

    public void Dispose()
    {
        _mirror.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
