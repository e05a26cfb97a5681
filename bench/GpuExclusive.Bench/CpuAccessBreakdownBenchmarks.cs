using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using GpuExclusive.Paging;
using GpuExclusive.Workloads;

namespace GpuExclusive.Bench;

/// <summary>
/// Where the time of <see cref="AddressSpace.Read{T}(ulong)"/> goes: the same random single-int reads as
/// <see cref="CpuAccessBenchmarks"/> (<see cref="CpuRandomAccessWorkload"/>: 4 MiB, 1024 present pages, 4096 reads per
/// invocation), each variant adding one piece of the engine's fast path to the raw-pointer baseline. The pieces are
/// rebuilt here from the engine's internal types (page table, PTE, pool, software TLB) exactly as
/// <c>AddressSpace.TranslateInsideAccess</c> uses them, so the differences between rows attribute the cost; the engine
/// itself is not changed.
/// </summary>
public unsafe class CpuAccessBreakdownBenchmarks
{
    private const int Ops = CpuRandomAccessWorkload.Ops;

    private CpuRandomAccessWorkload _workload = null!;
    private PagePool _pool = null!;
    private AddressSpace _space = null!;
    private ulong _base;
    private int* _raw;
    private int[] _random = null!;

    [GlobalSetup]
    public void Setup()
    {
        _workload = new CpuRandomAccessWorkload();
        _pool = _workload.Pool;
        _space = _workload.Space;
        _base = _workload.Base;
        _raw = _workload.Raw;
        _random = _workload.Random;
    }

    [GlobalCleanup]
    public void Cleanup() => _workload.Dispose();

    /// <summary>The raw pointer: one load per access.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Ops)]
    public int Raw() => _workload.RawRandomRead();

    /// <summary>Raw load inside the software-TLB bracket (<c>TlbShootdown.Enter/Exit</c>, a thread-static per access).</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public int TlbBracketOnly()
    {
        var raw = _raw;
        var sum = 0;
        foreach (var index in _random)
        {
            ref var slot = ref TlbShootdown.Enter();
            sum += raw[index];
            TlbShootdown.Exit(ref slot);
        }

        return sum;
    }

    /// <summary>The 4-level walk, PTE check and frame address, no TLB bracket and no accessed-bit update.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public int WalkOnly()
    {
        var table = _space.PageTable;
        var pool = _pool;
        var at = _base;
        var sum = 0;
        foreach (var index in _random)
        {
            sum += *Translate(table, pool, at + ((ulong)index << 2));
        }

        return sum;
    }

    /// <summary>Walk inside the TLB bracket, inlined into the loop: the engine's fast path minus the call and argument checks.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public int WalkAndBracketInlined()
    {
        var table = _space.PageTable;
        var pool = _pool;
        var at = _base;
        var sum = 0;
        foreach (var index in _random)
        {
            ref var slot = ref TlbShootdown.Enter();
            sum += *Translate(table, pool, at + ((ulong)index << 2));
            TlbShootdown.Exit(ref slot);
        }

        return sum;
    }

    /// <summary>
    /// As <see cref="WalkAndBracketInlined"/>, but the thread's TLB slot is looked up once per invocation instead of
    /// once per access (what a per-thread accessor handle would give): isolates the thread-static lookup.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public int WalkAndBracketSlotHoisted()
    {
        var table = _space.PageTable;
        var pool = _pool;
        var at = _base;
        var sum = 0;
        ref var slot = ref TlbShootdown.Enter();
        TlbShootdown.Exit(ref slot);
        var sequence = Volatile.Read(ref slot);
        foreach (var index in _random)
        {
            Volatile.Write(ref slot, ++sequence);
            sum += *Translate(table, pool, at + ((ulong)index << 2));
            Volatile.Write(ref slot, ++sequence);
        }

        return sum;
    }

    /// <summary>The engine: <see cref="AddressSpace.Read{T}(ulong)"/>.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public int EngineRead() => _workload.EngineRandomRead();

    // The read path of AddressSpace.TranslateInsideAccess for a present, young PTE (setup made every PTE young).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int* Translate(PageTable table, PagePool pool, ulong address)
    {
        var leaf = table.FindLeaf(address)!;
        var pte = Volatile.Read(ref leaf.Entries[PageTableLeaf.IndexOf(address)]);
        if (!Pte.IsReadable(pte))
        {
            throw new InvalidOperationException("setup populates every page");
        }

        return (int*)(pool.FrameAddress(Pte.Frame(pte)) + (address & AddressRange.PageMask));
    }
}
