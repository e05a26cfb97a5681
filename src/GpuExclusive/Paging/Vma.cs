namespace GpuExclusive.Paging;

/// <summary>
/// A virtual memory area <c>[Start, End)</c> with one protection and sharing mode (Linux <c>vm_area_struct</c>).
/// Every field is guarded by the owning space's mmap lock: changed under the write lock, read under either.
/// </summary>
internal sealed class Vma
{
    internal Vma(ulong start, ulong end, Protection protection, Sharing sharing, SharedMemoryObject? sharedObject, long objectFirstPage)
    {
        Start = start;
        End = end;
        Protection = protection;
        Sharing = sharing;
        SharedObject = sharedObject;
        ObjectFirstPage = objectFirstPage;
        SoftDirty = true;
    }

    internal ulong Start { get; set; }

    internal ulong End { get; set; }

    internal Protection Protection { get; set; }

    internal Sharing Sharing { get; }

    /// <summary>mlocked (<c>VM_LOCKED</c>).</summary>
    internal bool Locked { get; set; }

    /// <summary>
    /// <c>VM_SOFTDIRTY</c>: the whole area counts as soft-dirty and soft-dirty tracking is off. Set on creation,
    /// cleared by <see cref="AddressSpace.ClearSoftDirty"/>, after which a PTE must fault on write to become soft-dirty.
    /// </summary>
    internal bool SoftDirty { get; set; }

    /// <summary>The backing pages of a <see cref="Sharing.Shared"/> mapping; null for private ones.</summary>
    internal SharedMemoryObject? SharedObject { get; }

    /// <summary>The page of <see cref="SharedObject"/> that <see cref="Start"/> maps.</summary>
    internal long ObjectFirstPage { get; private set; }

    internal bool IsReadable => Protection != Protection.None;

    internal bool IsWritable => (Protection & Protection.Write) != 0;

    internal bool IsPrivate => Sharing == Sharing.Private;

    /// <summary>Soft-dirty tracking needs a write fault to mark a clean PTE (<c>vma_soft_dirty_enabled</c>).</summary>
    internal bool SoftDirtyTrackingEnabled => !SoftDirty;

    internal bool Contains(ulong address) => address >= Start && address < End;

    internal long ObjectPageOf(ulong address) => ObjectFirstPage + (long)((address - Start) >> PagePool.PageShift);

    /// <summary>Cuts this area at <paramref name="address"/>: this keeps <c>[Start, address)</c>, the returned area gets the rest.</summary>
    internal Vma SplitAt(ulong address)
    {
        System.Diagnostics.Debug.Assert(address > Start && address < End, "split point outside the area");
        SharedObject?.AddUser();
        var upper = new Vma(address, End, Protection, Sharing, SharedObject, ObjectPageOf(address))
        {
            Locked = Locked,
            SoftDirty = SoftDirty,
        };
        End = address;
        return upper;
    }

    /// <summary>A copy for a forked child: same range and object, not mlocked (<c>VM_LOCKED</c> is not inherited).</summary>
    internal Vma CloneForFork()
    {
        SharedObject?.AddUser();
        return new Vma(Start, End, Protection, Sharing, SharedObject, ObjectFirstPage) { SoftDirty = SoftDirty };
    }

    public override string ToString() => $"[0x{Start:x}, 0x{End:x}) {Protection} {Sharing}{(Locked ? " locked" : "")}";
}
