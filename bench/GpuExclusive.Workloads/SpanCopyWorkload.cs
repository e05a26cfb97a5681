using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GpuExclusive.Workloads;

/// <summary>
/// Bulk copy through the engine's span <see cref="AddressSpace.Read(ulong, Span{byte})"/> and
/// <see cref="AddressSpace.Write(ulong, ReadOnlySpan{byte})"/>: 1 MiB = 256 present pages (DESIGN §7: ≥ 0.5 of memcpy
/// speed). The baseline copies the same 1 MiB with <see cref="Buffer.MemoryCopy"/> between the same managed buffer and
/// 1 MiB of page-aligned native memory.
/// </summary>
internal sealed unsafe class SpanCopyWorkload : IDisposable
{
    internal const int Pages = 256;
    internal const int Bytes = Pages * PagePool.PageSize;

    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private readonly ulong _base;
    private readonly byte* _raw;
    // Pinned, so the baseline can use its address for the whole run without a fixed block in the measurement.
    private readonly byte[] _buffer;
    private readonly byte* _pinned;

    internal SpanCopyWorkload()
    {
        _pool = new PagePool(Pages);
        _space = new AddressSpace(_pool);
        _base = _space.Map(Bytes, Protection.ReadWrite);
        _raw = (byte*)NativeMemory.AlignedAlloc(Bytes, PagePool.PageSize);
        _buffer = GC.AllocateArray<byte>(Bytes, pinned: true);
        _pinned = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_buffer));
        Random.Shared.NextBytes(_buffer);
        // Populate every page so the measurement never faults, and give both sources the same bytes.
        _space.Write(_base, _buffer);
        _buffer.CopyTo(new Span<byte>(_raw, Bytes));
    }

    internal void MemoryCopyRead() => Buffer.MemoryCopy(_raw, _pinned, Bytes, Bytes);

    internal void EngineRead() => _space.Read(_base, _buffer);

    internal void MemoryCopyWrite() => Buffer.MemoryCopy(_pinned, _raw, Bytes, Bytes);

    internal void EngineWrite() => _space.Write(_base, _buffer);

    public void Dispose()
    {
        _space.Dispose();
        _pool.Dispose();
        NativeMemory.AlignedFree(_raw);
    }
}
