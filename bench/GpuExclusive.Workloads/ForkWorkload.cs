namespace GpuExclusive.Workloads;

/// <summary>
/// Fork of a populated private space of <see cref="Pages"/> present, writable, dirty pages, then disposal of the child,
/// against the least work any fork of as many private pages must do.
/// </summary>
/// <remarks>
/// <para>
/// Baseline: Linux <c>fork()</c> cannot be called safely from .NET (the child gets only the calling thread — no GC,
/// JIT or finalizer threads, locks held by vanished threads stay held — so it may only <c>exec</c>), and it would
/// measure the whole process, not one region. The baseline is therefore a floor written as plain arrays: for every PTE
/// (a <c>long[]</c>) write-protect the parent's entry, store the child's copy in a freshly allocated child table, and
/// atomically take a reference on the frame (<c>copy_present_pte</c>: <c>folio_get</c> + <c>folio_dup_file_rmap</c>);
/// then "dispose" the child by dropping those references. The ratio is the engine's cost over that floor.
/// </para>
/// <para>
/// Each fork needs a parent whose PTEs are writable again: <see cref="MakeParentWritable"/> writes every page, untimed,
/// which after the previous child is gone reuses each frame in place, so every fork write-protects every entry and
/// shoots down the software TLB as it would the first time.
/// </para>
/// </remarks>
internal sealed class ForkWorkload : IDisposable
{
    // Baseline PTE: present bit 0, write bit 1, young bit 5 (x86-64's), frame number from bit 12.
    private const long PresentBit = 1L << 0;
    private const long WriteBit = 1L << 1;
    private const long YoungBit = 1L << 5;
    private const int FrameShift = 12;

    private readonly PagePool _pool;
    private readonly AddressSpace _parent;
    private readonly ulong _base;
    private readonly long[] _parentTable;
    private readonly int[] _refCounts;
    private AddressSpace? _child;

    internal ForkWorkload(int pages)
    {
        Pages = pages;
        // The parent's frames plus a little slack (forking shares frames copy-on-write, so the child needs none); past
        // 64k pages the pool is not locked: the default RLIMIT_MEMLOCK would refuse it.
        _pool = new PagePool(pages + 256, lockMemory: pages <= 65536);
        _parent = new AddressSpace(_pool);
        _base = _parent.Map((ulong)pages * PagePool.PageSize, Protection.ReadWrite);
        MakeParentWritable();

        _parentTable = new long[pages];
        _refCounts = new int[pages];
        for (var i = 0; i < pages; i++)
        {
            _parentTable[i] = ((long)i << FrameShift) | PresentBit | WriteBit | YoungBit;
            _refCounts[i] = 1;
        }
    }

    internal int Pages { get; }

    /// <summary>Writes every page of the parent: every PTE present and writable, so the next fork write-protects them all.</summary>
    internal void MakeParentWritable()
    {
        for (var i = 0; i < Pages; i++)
        {
            _parent.Write(_base + ((ulong)i * PagePool.PageSize), i);
        }
    }

    internal void ForkAndDispose()
    {
        using var child = _parent.Fork();
    }

    /// <summary>The fork alone; <see cref="DisposeChild"/> disposes the child, outside the measurement.</summary>
    internal void ForkOnly() => _child = _parent.Fork();

    internal void DisposeChild()
    {
        _child?.Dispose();
        _child = null;
    }

    /// <summary>The floor: copy the PTE array write-protected, a reference per frame taken, then dropped again.</summary>
    internal long CopyPageTableArray()
    {
        var parent = _parentTable;
        var refCounts = _refCounts;
        var child = new long[parent.Length];
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

    /// <summary>
    /// Breakdown: only the reverse-map work a fork and the child's disposal do per page — add a second mapping to each
    /// of the parent's frames (which moves it from the frame's inline word to a per-frame list in a dictionary), then
    /// remove it again. Uses the engine's internal <c>ReverseMap</c> on the parent's own frames; the fake mapping names
    /// a space id no space has, and removing it restores each frame's inline entry.
    /// </summary>
    internal void ReverseMapShareAndUnshare()
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

    public void Dispose()
    {
        DisposeChild();
        _parent.Dispose();
        _pool.Dispose();
    }
}
