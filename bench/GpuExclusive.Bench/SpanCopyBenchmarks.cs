using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;

namespace GpuExclusive.Bench;

/// <summary>
/// Bulk copy through the engine's span <see cref="AddressSpace.Read(ulong, Span{byte})"/> and
/// <see cref="AddressSpace.Write(ulong, ReadOnlySpan{byte})"/>: 1 MiB = 256 present pages (DESIGN §7: ≥ 0.5 of memcpy
/// speed). The baseline copies the same 1 MiB with <see cref="Buffer.MemoryCopy"/> between the same managed buffer and
/// 1 MiB of page-aligned native memory.
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public unsafe class SpanCopyBenchmarks
{
    private const int Pages = 256;
    private const int Bytes = Pages * PagePool.PageSize;

    private PagePool _pool = null!;
    private AddressSpace _space = null!;
    private ulong _base;
    private byte* _raw;
    // Pinned so the baseline can take its address for the whole run without a fixed block in the measurement.
    private byte[] _buffer = null!;

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(Pages);
        _space = new AddressSpace(_pool);
        _base = _space.Map(Bytes, Protection.ReadWrite);
        _raw = (byte*)NativeMemory.AlignedAlloc(Bytes, PagePool.PageSize);
        _buffer = GC.AllocateArray<byte>(Bytes, pinned: true);
        Random.Shared.NextBytes(_buffer);
        // Populate every page so the measurement never faults, and give both sources the same bytes.
        _space.Write(_base, _buffer);
        _buffer.CopyTo(new Span<byte>(_raw, Bytes));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _space.Dispose();
        _pool.Dispose();
        NativeMemory.AlignedFree(_raw);
    }

    [Benchmark(Baseline = true), BenchmarkCategory("Read1MiB")]
    public void MemoryCopyRead()
    {
        fixed (byte* destination = _buffer)
        {
            Buffer.MemoryCopy(_raw, destination, Bytes, Bytes);
        }
    }

    [Benchmark, BenchmarkCategory("Read1MiB")]
    public void EngineRead() => _space.Read(_base, _buffer);

    [Benchmark(Baseline = true), BenchmarkCategory("Write1MiB")]
    public void MemoryCopyWrite()
    {
        fixed (byte* source = _buffer)
        {
            Buffer.MemoryCopy(source, _raw, Bytes, Bytes);
        }
    }

    [Benchmark, BenchmarkCategory("Write1MiB")]
    public void EngineWrite() => _space.Write(_base, _buffer);
}
