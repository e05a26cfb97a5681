using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;

namespace GpuExclusive.Bench;

/// <summary>
/// Single-int CPU access through the software MMU on present pages (DESIGN §7: random single int ≤ 3× a raw pointer).
/// Region: 1024 pages = 4 MiB, every page populated (present, young and dirty) in setup, so no access faults.
/// The baseline of each category does the same access sequence on a raw <c>int*</c> over 4 MiB of
/// <see cref="NativeMemory.AlignedAlloc"/>.
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public unsafe class CpuAccessBenchmarks
{
    private const int Pages = 1024;
    private const int Ints = Pages * PagePool.PageSize / sizeof(int);
    private const int Ops = 4096;

    private PagePool _pool = null!;
    private AddressSpace _space = null!;
    private ulong _base;
    private int* _raw;
    // The same random int indices for engine and baseline (fixed seed: every run walks the same sequence).
    private int[] _random = null!;

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(Pages);
        _space = new AddressSpace(_pool);
        _base = _space.Map((ulong)Pages * PagePool.PageSize, Protection.ReadWrite);
        _raw = (int*)NativeMemory.AlignedAlloc((nuint)Pages * PagePool.PageSize, PagePool.PageSize);
        for (var i = 0; i < Ints; i++)
        {
            // Populate every page (demand-zero happens here, not in the measurement) and give both the same contents.
            _space.Write(_base + ((ulong)i * sizeof(int)), i);
            _raw[i] = i;
        }

        var rng = new Random(12345);
        _random = new int[Ops];
        for (var i = 0; i < Ops; i++)
        {
            _random[i] = rng.Next(Ints);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _space.Dispose();
        _pool.Dispose();
        NativeMemory.AlignedFree(_raw);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops), BenchmarkCategory("RandomRead")]
    public int RawRandomRead()
    {
        var raw = _raw;
        var sum = 0;
        foreach (var index in _random)
        {
            sum += raw[index];
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Ops), BenchmarkCategory("RandomRead")]
    public int EngineRandomRead()
    {
        var space = _space;
        var at = _base;
        var sum = 0;
        foreach (var index in _random)
        {
            sum += space.Read<int>(at + ((ulong)index << 2));
        }

        return sum;
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops), BenchmarkCategory("RandomWrite")]
    public void RawRandomWrite()
    {
        var raw = _raw;
        foreach (var index in _random)
        {
            raw[index] = index;
        }
    }

    [Benchmark(OperationsPerInvoke = Ops), BenchmarkCategory("RandomWrite")]
    public void EngineRandomWrite()
    {
        var space = _space;
        var at = _base;
        foreach (var index in _random)
        {
            space.Write(at + ((ulong)index << 2), index);
        }
    }

    // Sequential: 4096 consecutive ints (16 KiB, 4 pages) — the best case for both, measuring the per-access path.
    [Benchmark(Baseline = true, OperationsPerInvoke = Ops), BenchmarkCategory("SequentialRead")]
    public int RawSequentialRead()
    {
        var raw = _raw;
        var sum = 0;
        for (var i = 0; i < Ops; i++)
        {
            sum += raw[i];
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Ops), BenchmarkCategory("SequentialRead")]
    public int EngineSequentialRead()
    {
        var space = _space;
        var at = _base;
        var sum = 0;
        for (var i = 0; i < Ops; i++)
        {
            sum += space.Read<int>(at + ((ulong)i << 2));
        }

        return sum;
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops), BenchmarkCategory("SequentialWrite")]
    public void RawSequentialWrite()
    {
        var raw = _raw;
        for (var i = 0; i < Ops; i++)
        {
            raw[i] = i;
        }
    }

    [Benchmark(OperationsPerInvoke = Ops), BenchmarkCategory("SequentialWrite")]
    public void EngineSequentialWrite()
    {
        var space = _space;
        var at = _base;
        for (var i = 0; i < Ops; i++)
        {
            space.Write(at + ((ulong)i << 2), i);
        }
    }
}
