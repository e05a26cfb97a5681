using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using GpuExclusive.Paging;

namespace GpuExclusive;

// CPU access through the software MMU: translate, check permission, set accessed/dirty, touch the frame.
public sealed partial class AddressSpace
{
    /// <summary>Reads a <typeparamref name="T"/> at <paramref name="address"/>; it must not cross a page boundary.</summary>
    /// <remarks>
    /// Reads take no lock and store nothing: they validate against the leaf's sequence count (<see cref="PageTableLeaf.Version"/>)
    /// and retry if a writer changed the entries meanwhile, so a value is only returned if the PTE it was read through
    /// was in place for the whole read.
    /// </remarks>
    /// <exception cref="ArgumentException">The value would cross a page boundary.</exception>
    /// <exception cref="MemoryAccessException">Unmapped or unreadable.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe T Read<T>(ulong address)
        where T : unmanaged
    {
        // The fast path: inside one page of the fast span, an even sequence count and a present, young, readable PTE;
        // everything else (crossing a page, the radix walk, a writer in the leaf, setting Young, faults) is ReadSlow's.
        // The span's PTEs are one flat array with the leaves' sequence counts just below it, so the page index is the
        // span check and the PTE's index, and every step is a raw load with no null or bounds check; loading the
        // array first makes that load this method's null check of this.
        var ptes = _fastPtes;
        var page = PageTable.FastPageOf(address);
        var pageOffset = address & AddressRange.PageMask;
        // sizeof(T) is a JIT-time constant: the first test folds away, and keeps the subtraction from wrapping.
        if (sizeof(T) <= PagePool.PageSize && page < PageTable.FastPages && pageOffset <= PagePool.PageSize - (ulong)sizeof(T))
        {
            ref var version = ref ptes[PageTable.FastVersionIndex(page)];
            var start = Volatile.Read(ref version);
            var pte = Volatile.Read(ref ptes[(nint)page]);
            // (pte - ReadableYoung) & ReadableYoungMask is zero exactly when pte has both bits of ReadableYoung and neither
            // other bit of the mask: subtracting clears the two bits when both are set, and a missing one borrows and
            // leaves a set bit behind. One instruction fewer than masking and comparing a copy.
            if (((pte - ReadableYoung) & ReadableYoungMask) == 0)
            {
                var value = Unsafe.ReadUnaligned<T>(_frameBase + Pte.FrameOffset(pte) + pageOffset);
                Volatile.ReadBarrier();
                // Equal to the even count: no writer was in the leaf when we started, and none came meanwhile (an odd
                // count at the start can never match, since the count only grows).
                if (Volatile.Read(ref version) == (start & ~1L))
                {
                    // The PTEs and frames are this space's: keep it reachable until the value is read.
                    GC.KeepAlive(this);
                    return value;
                }
            }
        }

        return ReadSlow<T>(address);
    }

    // A PTE the read fast path may use: present (kind 01), not PROT_NONE, Young already set.
    private const long ReadableYoungMask = Pte.Young | Pte.ProtNone | 0b11;
    private const long ReadableYoung = Pte.Young | 0b01;

    /// <summary>The read path that also sets Young, waits out writers, and faults.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private unsafe T ReadSlow<T>(ulong address)
        where T : unmanaged
    {
        if ((address & AddressRange.PageMask) + (ulong)sizeof(T) > PagePool.PageSize)
        {
            ThrowCrossesPage(address, sizeof(T));
        }

        var spinner = new SpinWait();
        var kept = -1L; // a frame a device-exclusive restore left locked until this read is done
        try
        {
            while (true)
            {
                // In the fast span the count is found by indexing, like the PTE: no radix walk on the way to the fault.
                var versionAddress = PageTable.FindVersion(_fastPtes, _pageTable, address);
                if (versionAddress != null)
                {
                    var version = Volatile.Read(ref *versionAddress);
                    if ((version & 1) != 0)
                    {
                        spinner.SpinOnce();
                        continue; // a writer is changing this leaf
                    }

                    var pointer = TranslateInsideAccess(address, isWrite: false);
                    if (pointer != null)
                    {
                        var value = Unsafe.ReadUnaligned<T>(pointer);
                        Volatile.ReadBarrier();
                        if (Volatile.Read(ref *versionAddress) == version)
                        {
                            return value;
                        }

                        continue;
                    }
                }

                ReleaseRestored(kept);
                kept = -1;
                kept = HandleFault(address, isWrite: false);
            }
        }
        finally
        {
            ReleaseRestored(kept);
            RunDeferredAfterAccess();
        }
    }

    /// <summary>Writes <paramref name="value"/> at <paramref name="address"/>; it must not cross a page boundary.</summary>
    /// <exception cref="ArgumentException">The value would cross a page boundary.</exception>
    /// <exception cref="MemoryAccessException">Unmapped or not writable; nothing was written.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe void Write<T>(ulong address, T value)
        where T : unmanaged
    {
        if ((address & AddressRange.PageMask) + (ulong)sizeof(T) > PagePool.PageSize)
        {
            ThrowCrossesPage(address, sizeof(T));
        }

        ref var slot = ref TlbShootdown.Enter();
        var pointer = TranslateInsideAccess(address, isWrite: true);
        if (pointer != null)
        {
            Unsafe.WriteUnaligned(pointer, value);
            TlbShootdown.Exit(ref slot);
            return;
        }

        TlbShootdown.Exit(ref slot);
        WriteAfterFault(address, value);
    }

    /// <summary>Atomically adds <paramref name="value"/> to the int at <paramref name="address"/> and returns the new value, like <see cref="Interlocked.Add(ref int, int)"/>.</summary>
    /// <exception cref="ArgumentException">The address is not 4-byte aligned.</exception>
    /// <exception cref="MemoryAccessException">Unmapped or not writable; nothing changed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe int AtomicAdd(ulong address, int value)
    {
        if ((address & 3) != 0)
        {
            ThrowMisalignedAtomic(address);
        }

        ref var slot = ref TlbShootdown.Enter();
        var pointer = TranslateInsideAccess(address, isWrite: true);
        if (pointer != null)
        {
            var result = Interlocked.Add(ref Unsafe.AsRef<int>(pointer), value);
            TlbShootdown.Exit(ref slot);
            return result;
        }

        TlbShootdown.Exit(ref slot);
        return AtomicAddAfterFault(address, value);
    }

    // The slow paths of writes: fault, then retry the access until it translates. Kept out of line so the fast paths inline.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WriteAfterFault<T>(ulong address, T value)
        where T : unmanaged => WriteAfterFault<StoreValue<T>, T>(address, new StoreValue<T>(value));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private int AtomicAddAfterFault(ulong address, int value) => WriteAfterFault<AddValue, int>(address, new AddValue(value));

    /// <summary>
    /// Faults <paramref name="address"/> in for write and applies <paramref name="write"/> once it translates; a frame a
    /// device-exclusive restore kept locked is released only after the write (FIFO hand-off), and what notifier
    /// callbacks deferred runs once the write is done.
    /// </summary>
    private unsafe TResult WriteAfterFault<TWrite, TResult>(ulong address, TWrite write)
        where TWrite : struct, IWriteAfterFault<TResult>
    {
        try
        {
            while (true)
            {
                var kept = HandleFault(address, isWrite: true);
                try
                {
                    ref var slot = ref TlbShootdown.Enter();
                    var pointer = TranslateInsideAccess(address, isWrite: true);
                    if (pointer != null)
                    {
                        var result = write.Apply(pointer);
                        TlbShootdown.Exit(ref slot);
                        return result;
                    }

                    TlbShootdown.Exit(ref slot);
                }
                finally
                {
                    ReleaseRestored(kept);
                }
            }
        }
        finally
        {
            RunDeferredAfterAccess();
        }
    }

    /// <summary>A write the fault path retries: applied to the translated pointer, inside the access.</summary>
    private unsafe interface IWriteAfterFault<out TResult>
    {
        TResult Apply(byte* pointer);
    }

    private readonly unsafe struct StoreValue<T>(T value) : IWriteAfterFault<T>
        where T : unmanaged
    {
        public T Apply(byte* pointer)
        {
            Unsafe.WriteUnaligned(pointer, value);
            return value;
        }
    }

    private readonly unsafe struct AddValue(int value) : IWriteAfterFault<int>
    {
        public int Apply(byte* pointer) => Interlocked.Add(ref Unsafe.AsRef<int>(pointer), value);
    }

    /// <summary>Copies bytes starting at <paramref name="address"/> into <paramref name="destination"/>; may cross pages.</summary>
    /// <exception cref="MemoryAccessException">Some page is unmapped or unreadable; bytes of earlier pages may already be copied, the space is unchanged.</exception>
    public unsafe void Read(ulong address, Span<byte> destination)
    {
        ThrowIfRangeOverflows(address, destination.Length);
        var done = 0;
        var kept = -1L; // a frame a device-exclusive restore left locked until its chunk is copied
        try
        {
            while (done < destination.Length)
            {
                var at = address + (ulong)done;
                var chunk = (int)Math.Min((ulong)(destination.Length - done), PagePool.PageSize - (at & AddressRange.PageMask));
                var leaf = _pageTable.FindLeaf(at);
                var version = leaf is null ? 1 : Volatile.Read(ref leaf.Version);
                var pointer = (version & 1) == 0 ? TranslateInsideAccess(at, isWrite: false) : null;
                if (pointer == null)
                {
                    if (leaf is null || (version & 1) == 0)
                    {
                        ReleaseRestored(kept);
                        kept = -1;
                        kept = HandleFault(at, isWrite: false);
                    }

                    continue;
                }

                new ReadOnlySpan<byte>(pointer, chunk).CopyTo(destination.Slice(done, chunk));
                Volatile.ReadBarrier();
                if (Volatile.Read(ref leaf!.Version) == version)
                {
                    done += chunk; // otherwise a writer changed the leaf meanwhile: copy this chunk again
                    ReleaseRestored(kept);
                    kept = -1;
                }
            }
        }
        finally
        {
            ReleaseRestored(kept);
            RunDeferredAfterAccess();
        }
    }

    /// <summary>Copies <paramref name="source"/> to memory starting at <paramref name="address"/>; may cross pages.</summary>
    /// <exception cref="MemoryAccessException">
    /// Some page is unmapped or not writable. Every page is checked before anything is written, so a failed write
    /// writes nothing (pages before the bad one may have been faulted in).
    /// </exception>
    public unsafe void Write(ulong address, ReadOnlySpan<byte> source)
    {
        ThrowIfRangeOverflows(address, source.Length);
        if (source.IsEmpty)
        {
            return;
        }

        PreflightWrite(address, (ulong)source.Length);
        var done = 0;
        var kept = -1L; // a frame a device-exclusive restore left locked until its chunk is written
        try
        {
            while (done < source.Length)
            {
                var at = address + (ulong)done;
                var chunk = (int)Math.Min((ulong)(source.Length - done), PagePool.PageSize - (at & AddressRange.PageMask));
                ref var slot = ref TlbShootdown.Enter();
                var pointer = TranslateInsideAccess(at, isWrite: true);
                if (pointer == null)
                {
                    TlbShootdown.Exit(ref slot);
                    ReleaseRestored(kept);
                    kept = -1;
                    kept = HandleFault(at, isWrite: true);
                    continue;
                }

                source.Slice(done, chunk).CopyTo(new Span<byte>(pointer, chunk));
                TlbShootdown.Exit(ref slot);
                done += chunk;
                ReleaseRestored(kept);
                kept = -1;
            }
        }
        finally
        {
            ReleaseRestored(kept);
            RunDeferredAfterAccess();
        }
    }

    /// <summary>
    /// The host pointer for <paramref name="address"/> when its PTE allows the access, after setting Young (and
    /// Dirty|SoftDirty for writes) the way a hardware MMU would; null when the access must take the fault path.
    /// Runs between <see cref="TlbShootdown.Enter"/> and <see cref="TlbShootdown.Exit"/>: never blocks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private unsafe byte* TranslateInsideAccess(ulong address, bool isWrite)
    {
        var pointer = PageTable.FindPte(_fastPtes, _pageTable, address);
        if (pointer == null)
        {
            return null;
        }

        ref var entry = ref *pointer;
        var accessed = isWrite ? Pte.Young | Pte.Dirty | Pte.SoftDirty : Pte.Young;
        while (true)
        {
            var pte = Volatile.Read(ref entry);
            if (!(isWrite ? Pte.IsWritable(pte) : Pte.IsReadable(pte)))
            {
                return null;
            }

            if ((pte & accessed) == accessed || Interlocked.CompareExchange(ref entry, pte | accessed, pte) == pte)
            {
                return _frameBase + Pte.FrameOffset(pte) + (address & AddressRange.PageMask);
            }
        }
    }

    /// <summary>Checks every page of a span write for a mapping that allows it, so a refused write writes nothing.</summary>
    private void PreflightWrite(ulong address, ulong length)
    {
        var first = address & ~AddressRange.PageMask;
        var last = (address + length - 1) & ~AddressRange.PageMask;
        if (first == last)
        {
            return;
        }

        _mmapLock.EnterReadLock();
        try
        {
            ThrowIfDisposed();
            for (var page = first; page <= last; page += PagePool.PageSize)
            {
                var area = _areas.Find(page);
                var target = page == first ? address : page;
                if (area is null)
                {
                    throw new MemoryAccessException(target, isWrite: true, "no mapping covers the address");
                }

                if (!area.IsWritable)
                {
                    throw new MemoryAccessException(target, isWrite: true, $"the mapping {area} is not writable");
                }
            }
        }
        finally
        {
            _mmapLock.ExitReadLock();
        }
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowCrossesPage(ulong address, int size) =>
        throw new ArgumentException($"a {size}-byte access at 0x{address:x} would cross a page boundary", nameof(address));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowMisalignedAtomic(ulong address) =>
        throw new ArgumentException($"AtomicAdd needs a 4-byte-aligned address; 0x{address:x} is not", nameof(address));

    private static void ThrowIfRangeOverflows(ulong address, int length)
    {
        if ((ulong)length > ulong.MaxValue - address)
        {
            throw new ArgumentException($"{length} bytes at 0x{address:x} run past the end of the address space", nameof(address));
        }
    }
}
