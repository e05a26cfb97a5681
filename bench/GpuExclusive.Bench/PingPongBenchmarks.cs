using BenchmarkDotNet.Attributes;
using GpuExclusive.Native;

namespace GpuExclusive.Bench;

/// <summary>
/// Ownership ping-pong: a device atomic (device fault → grant → launch) then a CPU atomic (revocation) on the same
/// page(s), per round trip; and two devices alternating on one page. Baseline: a Linux minor fault (first touch of a
/// fresh anonymous page). DESIGN §7: one-page CPU↔device round trip ≤ 10× a minor fault.
/// </summary>
[BenchmarkCategory("PingPong")]
[FullyOptimized]
public unsafe class PingPongBenchmarks
{
    private const int RoundTrips = 64;

    private PagePool _pool = null!;
    private AddressSpace _space = null!;
    private ExclusiveDevice _first = null!;
    private ExclusiveDevice _second = null!;
    private DeviceMirror _firstMirror = null!;
    private DeviceMirror _secondMirror = null!;
    private AtomicOp[] _ops = null!;
    private ulong _address;
    private nint _linux;

    [Params(1, 16)]
    public int Pages { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(Pages + 64);
        _space = new AddressSpace(_pool);
        _address = _space.Map((ulong)Pages * PagePool.PageSize, Protection.ReadWrite);
        _first = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _second = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _firstMirror = _first.Mirror(_space);
        _secondMirror = _second.Mirror(_space);
        _ops = [.. Enumerable.Range(0, Pages).Select(p => new AtomicOp(_address + ((ulong)p * PagePool.PageSize), AtomicKind.Add, 1))];
    }

    [IterationSetup(Target = nameof(LinuxMinorFault))]
    public void MapFresh() => _linux = LinuxMemory.Mmap(0, (nuint)(RoundTrips * Pages * PagePool.PageSize), LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous, -1, 0);

    [IterationCleanup(Target = nameof(LinuxMinorFault))]
    public void UnmapFresh() => LinuxMemory.Munmap(_linux, (nuint)(RoundTrips * Pages * PagePool.PageSize));

    // One invocation per iteration for every row (the baseline needs a fresh mapping per iteration), so that
    // BenchmarkDotNet can compute ratios: rows with different invocation counts get none. Each iteration starts with
    // one unmeasured round trip: between iterations the resident kernel has been idle long enough to leave, and the
    // rows measure a steady ping-pong, not one relaunch (100–400 µs on the CPU accelerator) spread over 64 trips.
    [IterationSetup(Target = nameof(CpuDevice))]
    public void WarmCpuDevice() => CpuDeviceRoundTrip();

    [IterationSetup(Target = nameof(TwoDevices))]
    public void WarmTwoDevices() => TwoDevicesRoundTrip();

    /// <summary>Pages × RoundTrips first touches: the unit every ping-pong row is divided by.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = RoundTrips)]
    public int LinuxMinorFault()
    {
        var sum = 0;
        var bytes = (byte*)_linux;
        for (var i = 0; i < RoundTrips * Pages; i++)
        {
            sum += bytes[i * PagePool.PageSize];
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public long CpuDevice()
    {
        long sum = 0;
        for (var round = 0; round < RoundTrips; round++)
        {
            sum += CpuDeviceRoundTrip();
        }

        return sum;
    }

    private long CpuDeviceRoundTrip()
    {
        var sum = _firstMirror.Run(_ops).Completed;
        for (var p = 0; p < Pages; p++)
        {
            sum += _space.AtomicAdd(_address + ((ulong)p * PagePool.PageSize), 1);
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public long TwoDevices()
    {
        long sum = 0;
        for (var round = 0; round < RoundTrips; round++)
        {
            sum += TwoDevicesRoundTrip();
        }

        return sum;
    }

    private long TwoDevicesRoundTrip() => _firstMirror.Run(_ops).Completed + _secondMirror.Run(_ops).Completed;

    [GlobalCleanup]
    public void Cleanup()
    {
        _firstMirror.Dispose();
        _secondMirror.Dispose();
        _first.Dispose();
        _second.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
