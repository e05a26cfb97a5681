using BenchmarkDotNet.Attributes;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Ownership ping-pong, CPU↔device and between two devices, against Linux minor faults (DESIGN §7: one-page CPU↔device
/// round trip ≤ 10× a minor fault): <see cref="PingPongWorkload"/> and <see cref="MinorFaultWorkload"/>, 64 round trips
/// per invocation.
/// </summary>
[BenchmarkCategory("PingPong")]
[FullyOptimized]
public class PingPongBenchmarks
{
    private const int RoundTrips = 64;

    private ExclusiveDevice _first = null!;
    private ExclusiveDevice _second = null!;
    private PingPongWorkload _workload = null!;
    private MinorFaultWorkload _linux = null!;

    [Params(1, 16)]
    public int Pages { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _first = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _second = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _workload = new PingPongWorkload(_first, _second, Pages);
        _linux = new MinorFaultWorkload(RoundTrips * Pages);
    }

    [IterationSetup(Target = nameof(LinuxMinorFault))]
    public void MapFresh() => _linux.MapFresh();

    [IterationCleanup(Target = nameof(LinuxMinorFault))]
    public void UnmapFresh() => _linux.Unmap();

    // One invocation per iteration for every row (the baseline needs a fresh mapping per iteration), so that
    // BenchmarkDotNet can compute ratios: rows with different invocation counts get none. Each iteration starts with
    // one unmeasured round trip: between iterations the resident kernel has been idle long enough to leave, and the
    // rows measure a steady ping-pong, not one relaunch (100–400 µs on the CPU accelerator) spread over 64 trips.
    [IterationSetup(Target = nameof(CpuDevice))]
    public void WarmCpuDevice() => _workload.CpuDeviceRoundTrip();

    [IterationSetup(Target = nameof(TwoDevices))]
    public void WarmTwoDevices() => _workload.TwoDevicesRoundTrip();

    /// <summary>Pages × RoundTrips first touches: the unit every ping-pong row is divided by.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = RoundTrips)]
    public int LinuxMinorFault() => _linux.ReadEach();

    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public long CpuDevice()
    {
        long sum = 0;
        for (var round = 0; round < RoundTrips; round++)
        {
            sum += _workload.CpuDeviceRoundTrip();
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public long TwoDevices()
    {
        long sum = 0;
        for (var round = 0; round < RoundTrips; round++)
        {
            sum += _workload.TwoDevicesRoundTrip();
        }

        return sum;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _workload.Dispose();
        _first.Dispose();
        _second.Dispose();
    }
}
