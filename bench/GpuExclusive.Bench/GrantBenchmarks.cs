using BenchmarkDotNet.Attributes;
using GpuExclusive.Native;

namespace GpuExclusive.Bench;

/// <summary>
/// Grant cost per page: <c>MakeExclusive</c> over 4096 populated pages against Linux changing the PTEs of as many pages
/// (<c>mprotect</c> to read-only) — the kernel's own price for walking and rewriting a PTE range. DESIGN §7: ≤ 2×.
/// </summary>
[BenchmarkCategory("Grant")]
[FullyOptimized]
public unsafe class GrantBenchmarks
{
    private const int Pages = 4096;
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
        _linux = LinuxMemory.Mmap(0, (nuint)Bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous, -1, 0);
        new Span<byte>((void*)_linux, (int)Bytes).Fill(1);
    }

    /// <summary>Every page back to a present, writable CPU PTE (revoking the previous grant), outside the measurement.</summary>
    [IterationSetup(Target = nameof(MakeExclusive))]
    public void RestorePages()
    {
        for (var page = 0UL; page < Pages; page++)
        {
            _space.Write(_address + (page * PagePool.PageSize), (int)page);
        }
    }

    [IterationSetup(Target = nameof(LinuxMprotect))]
    public void MakeLinuxWritable() => LinuxMemory.Mprotect(_linux, (nuint)Bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite);

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public int LinuxMprotect() => LinuxMemory.Mprotect(_linux, (nuint)Bytes, LinuxMemory.ProtRead);

    [Benchmark(OperationsPerInvoke = Pages)]
    public int MakeExclusive() => _mirror.MakeExclusive(_address, Bytes);

    [GlobalCleanup]
    public void Cleanup()
    {
        LinuxMemory.Munmap(_linux, (nuint)Bytes);
        _mirror.Dispose();
        _device.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
