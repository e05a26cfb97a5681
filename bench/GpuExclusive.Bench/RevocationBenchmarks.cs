using BenchmarkDotNet.Attributes;
using GpuExclusive.Native;

namespace GpuExclusive.Bench;

/// <summary>
/// Revocation: a CPU read of a device-exclusive page until its PTE is restored (fault, Clear notifier, the device
/// unmaps, restore), against a Linux minor fault — the first touch of a fresh anonymous page — measured alike.
/// DESIGN §7: ≤ 0.1× with the device idle.
/// </summary>
[BenchmarkCategory("Revocation")]
[FullyOptimized]
public unsafe class RevocationBenchmarks
{
    private const int Pages = 256;
    private const ulong Bytes = (ulong)Pages * PagePool.PageSize;

    private PagePool _pool = null!;
    private AddressSpace _space = null!;
    private ExclusiveDevice _device = null!;
    private DeviceMirror _mirror = null!;
    private ulong _address;
    private nint _linux;

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(Pages + 64);
        _space = new AddressSpace(_pool);
        _address = _space.Map(Bytes, Protection.ReadWrite);
        _device = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _mirror = _device.Mirror(_space);
    }

    [IterationSetup(Target = nameof(RevokeIdleDevice))]
    public void Grant() => _mirror.MakeExclusive(_address, Bytes);

    [IterationSetup(Target = nameof(LinuxMinorFault))]
    public void MapFresh() => _linux = LinuxMemory.Mmap(0, (nuint)Bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous, -1, 0);

    [IterationCleanup(Target = nameof(LinuxMinorFault))]
    public void UnmapFresh() => LinuxMemory.Munmap(_linux, (nuint)Bytes);

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public int LinuxMinorFault()
    {
        var sum = 0;
        var bytes = (byte*)_linux;
        for (var page = 0; page < Pages; page++)
        {
            sum += bytes[page * PagePool.PageSize];
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public int RevokeIdleDevice()
    {
        var sum = 0;
        for (var page = 0UL; page < Pages; page++)
        {
            sum += _space.Read<int>(_address + (page * PagePool.PageSize));
        }

        return sum;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _mirror.Dispose();
        _device.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
