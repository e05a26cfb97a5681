using BenchmarkDotNet.Attributes;

namespace GpuExclusive.Bench;

/// <summary>
/// Fork of a populated 256 MiB private space (65536 present, writable, dirty pages), then disposal of the child.
/// </summary>
/// <remarks>
/// <para>
/// Baseline: Linux <c>fork()</c> cannot be called safely from .NET (the child gets only the calling thread — no GC,
/// JIT or finalizer threads, locks held by vanished threads stay held — so it may only <c>exec</c>), and it would
/// measure the whole process, not one 256 MiB region. The baseline is therefore the least work any fork of 65536
/// private pages must do, written as plain arrays: for every PTE (a <c>long[]</c> of 65536 entries) write-protect
/// the parent's entry, store the child's copy in a freshly allocated child table, and atomically take a reference on
/// the frame (<c>copy_present_pte</c>: <c>folio_get</c> + <c>folio_dup_file_rmap</c>); then "dispose" the child by
/// dropping those references. The ratio is the engine's cost over that floor.
/// </para>
/// <para>
/// Each iteration is one fork over a parent whose PTEs are writable again: [IterationSetup] writes every page, which
/// after the previous child is gone reuses each frame in place, so every fork write-protects 65536 entries and
/// shoots down the software TLB as it would the first time.
/// </para>
/// </remarks>
[InvocationCount(1, unrollFactor: 1)]
[WarmupCount(3)]
[IterationCount(9)]
[FullyOptimized]
public class ForkBenchmarks
{
    private const int Pages = 65536;
    private const ulong Bytes = (ulong)Pages * PagePool.PageSize;

    // Baseline PTE: present bit 0, write bit 1, young bit 5 (x86-64's), frame number from bit 12.
    private const long PresentBit = 1L << 0;
    private const long WriteBit = 1L << 1;
    private const long YoungBit = 1L << 5;
    private const int FrameShift = 12;

    private PagePool _pool = null!;
    private AddressSpace _parent = null!;
    private ulong _base;

    private AddressSpace? _child;

    private long[] _parentTable = null!;
    private int[] _refCounts = null!;

    [GlobalSetup]
    public void Setup()
    {
        // The parent's frames plus a little slack; forking shares frames copy-on-write, so the child needs none.
        _pool = new PagePool(Pages + 256);
        _parent = new AddressSpace(_pool);
        _base = _parent.Map(Bytes, Protection.ReadWrite);
        TouchEveryPage();

        _parentTable = new long[Pages];
        _refCounts = new int[Pages];
        for (var i = 0; i < Pages; i++)
        {
            _parentTable[i] = ((long)i << FrameShift) | PresentBit | WriteBit | YoungBit;
            _refCounts[i] = 1;
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _parent.Dispose();
        _pool.Dispose();
    }

    [IterationSetup(Targets = [nameof(EngineForkAndDispose), nameof(EngineForkOnly)])]
    public void MakeParentWritable() => TouchEveryPage();

    [IterationCleanup(Target = nameof(EngineForkOnly))]
    public void DisposeChild()
    {
        _child?.Dispose();
        _child = null;
    }

    [Benchmark(Baseline = true)]
    public long CopyPageTableArray()
    {
        var parent = _parentTable;
        var refCounts = _refCounts;
        var child = new long[Pages];
        // The parent's write-protect is an unconditional store, so it costs the same whether or not the bit was set.
        for (var i = 0; i < parent.Length; i++)
        {
            var pte = parent[i] & ~WriteBit;
            parent[i] = pte;
            child[i] = pte & ~YoungBit;
            Interlocked.Increment(ref refCounts[(int)(pte >> FrameShift)]);
        }

        // Dispose the child: drop the references its PTEs held.
        long dropped = 0;
        for (var i = 0; i < child.Length; i++)
        {
            var pte = child[i];
            if (pte != 0)
            {
                Interlocked.Decrement(ref refCounts[(int)(pte >> FrameShift)]);
                dropped++;
            }
        }

        return dropped;
    }

    [Benchmark]
    public void EngineForkAndDispose()
    {
        using var child = _parent.Fork();
    }

    /// <summary>Breakdown: the fork alone; the child is disposed in [IterationCleanup], outside the measurement.</summary>
    [Benchmark]
    public void EngineForkOnly() => _child = _parent.Fork();

    /// <summary>
    /// Breakdown: only the reverse-map work a fork and the child's disposal do per page — add a second mapping to each
    /// of the parent's 65536 frames (which moves it from the frame's inline word to a per-frame list in a dictionary),
    /// then remove it again. Uses the engine's internal <c>ReverseMap</c> on the parent's own frames; the fake mapping
    /// names a space id no space has, and removing it restores each frame's inline entry.
    /// </summary>
    [Benchmark]
    public void ReverseMapShareAndUnshare()
    {
        const int unusedSpaceId = (1 << 27) - 1;
        var rmap = _pool.Rmap;
        var firstPage = _base >> PagePool.PageShift;
        for (var frame = 0L; frame < Pages; frame++)
        {
            rmap.Add(frame, unusedSpaceId, firstPage + (ulong)frame);
        }

        for (var frame = 0L; frame < Pages; frame++)
        {
            rmap.Remove(frame, unusedSpaceId, firstPage + (ulong)frame);
        }
    }

    private void TouchEveryPage()
    {
        for (var i = 0; i < Pages; i++)
        {
            _parent.Write(_base + ((ulong)i * PagePool.PageSize), i);
        }
    }
}
