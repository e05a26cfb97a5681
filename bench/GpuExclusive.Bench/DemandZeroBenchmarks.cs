using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using GpuExclusive.Native;

namespace GpuExclusive.Bench;

/// <summary>
/// Demand-zero fault-in, per page: the first write to each of 1024 pages of a fresh mapping. The engine's fault
/// (allocate a frame from the pool, zero it, install the PTE) is compared with Linux's minor fault on the first touch of
/// each page of a fresh anonymous <c>mmap</c> — the kernel doing the same job (DESIGN §7 uses it as the yardstick).
/// </summary>
/// <remarks>
/// Mapping and unmapping are outside the measurement ([IterationSetup]/[IterationCleanup]), so each iteration is a
/// single invocation over a fresh mapping: <see cref="InvocationCountAttribute"/> 1, and more iterations than the
/// default short job because one invocation is only milliseconds.
/// </remarks>
[InvocationCount(1, unrollFactor: 1)]
[WarmupCount(5)]
[IterationCount(21)]
[FullyOptimized]
public unsafe class DemandZeroBenchmarks
{
    private const int Pages = 1024;
    private const nuint Bytes = (nuint)Pages * PagePool.PageSize;

    // MADV_NOHUGEPAGE: keep the baseline on 4 KiB pages even where transparent huge pages are "always" (with THP one
    // fault would populate 512 pages and the baseline would not be a per-page minor fault any more).
    private const int MadvNoHugePage = 15;

    private PagePool _pool = null!;
    private AddressSpace _space = null!;
    private ulong _engineBase;
    private nint _linuxBase;

    [GlobalSetup]
    public void Setup()
    {
        if (!LinuxMemory.IsSupported)
        {
            throw new PlatformNotSupportedException("the baseline is a Linux minor fault");
        }

        _pool = new PagePool(Pages);
        _space = new AddressSpace(_pool);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _space.Dispose();
        _pool.Dispose();
    }

    [IterationSetup(Target = nameof(LinuxFirstTouch))]
    public void MapLinux()
    {
        _linuxBase = LinuxMemory.Mmap(0, Bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous, -1, 0);
        if (_linuxBase == LinuxMemory.MapFailed)
        {
            throw new InvalidOperationException($"mmap failed, errno {Marshal.GetLastPInvokeError()}");
        }

        _ = LinuxMemory.Madvise(_linuxBase, Bytes, MadvNoHugePage); // best effort: a kernel without THP refuses it
    }

    [IterationCleanup(Target = nameof(LinuxFirstTouch))]
    public void UnmapLinux() => LinuxMemory.Munmap(_linuxBase, Bytes);

    [IterationSetup(Target = nameof(EngineFirstTouch))]
    public void MapEngine() => _engineBase = _space.Map(Bytes, Protection.ReadWrite);

    [IterationCleanup(Target = nameof(EngineFirstTouch))]
    public void UnmapEngine() => _space.Unmap(_engineBase, Bytes);

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public void LinuxFirstTouch()
    {
        var page = (byte*)_linuxBase;
        for (var i = 0; i < Pages; i++)
        {
            *(int*)(page + ((nint)i * PagePool.PageSize)) = i;
        }
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public void EngineFirstTouch()
    {
        var space = _space;
        var at = _engineBase;
        for (var i = 0; i < Pages; i++)
        {
            space.Write(at + ((ulong)i * PagePool.PageSize), i);
        }
    }
}
