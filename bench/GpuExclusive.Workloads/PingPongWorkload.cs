namespace GpuExclusive.Workloads;

/// <summary>
/// Ownership ping-pong on <see cref="Pages"/> pages: a device batch of one add a page (device faults → grants → launch)
/// then a CPU atomic on each page (revocations), per round trip; and two devices alternating on the same pages. DESIGN
/// §7: one-page CPU↔device round trip ≤ 10× a Linux minor fault (<see cref="MinorFaultWorkload"/>).
/// </summary>
internal sealed class PingPongWorkload : IDisposable
{
    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private readonly DeviceMirror _firstMirror;
    private readonly DeviceMirror _secondMirror;
    private readonly AtomicOp[] _ops;
    private readonly ulong _address;

    /// <param name="first">The device of the CPU↔device round trips (the caller's, as is <paramref name="second"/>).</param>
    /// <param name="second">The other device of the device↔device round trips.</param>
    /// <param name="pages">Pages passed back and forth per round trip.</param>
    internal PingPongWorkload(ExclusiveDevice first, ExclusiveDevice second, int pages)
    {
        Pages = pages;
        _pool = new PagePool(pages + 64);
        _space = new AddressSpace(_pool);
        _address = _space.Map((ulong)pages * PagePool.PageSize, Protection.ReadWrite);
        _firstMirror = first.Mirror(_space);
        _secondMirror = second.Mirror(_space);
        _ops = Batches.AddsOverPages(_address, pages, pages);
    }

    internal int Pages { get; }

    internal long CpuDeviceRoundTrip()
    {
        var sum = Batches.RequireCompleted(_firstMirror.Run(_ops), Pages, "device batch").Completed;
        for (var p = 0; p < Pages; p++)
        {
            sum += _space.AtomicAdd(_address + ((ulong)p * PagePool.PageSize), 1);
        }

        return sum;
    }

    internal long TwoDevicesRoundTrip() =>
        Batches.RequireCompleted(_firstMirror.Run(_ops), Pages, "first device's batch").Completed +
        Batches.RequireCompleted(_secondMirror.Run(_ops), Pages, "second device's batch").Completed;

    public void Dispose()
    {
        _firstMirror.Dispose();
        _secondMirror.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
