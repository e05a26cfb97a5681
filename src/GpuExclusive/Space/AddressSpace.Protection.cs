using GpuExclusive.Notifiers;
using GpuExclusive.Paging;

namespace GpuExclusive;

// Protection changes: mprotect and soft-dirty clearing (clear_refs), both narrowing PTEs under one invalidation.
public sealed partial class AddressSpace
{
    /// <summary>Changes the protection of every page in the range (<c>mprotect</c>), splitting areas at its ends.</summary>
    /// <exception cref="ArgumentException">Bad range, bad protection, or part of the range is not mapped (nothing changed).</exception>
    public void Protect(ulong address, ulong length, Protection protection)
    {
        var end = AddressRange.Validate(address, length);
        AddressRange.ValidateProtection(protection);
        _mmapLock.EnterWriteLock();
        try
        {
            ThrowIfDisposed();
            ThrowIfNotFullyMappedLocked(address, end);
            using (_notifiers.Start(new NotifierRange(address, end, NotifierEvent.Protection)))
            {
                _areas.SplitAt(address);
                _areas.SplitAt(end);
                foreach (var area in _areas.Overlapping(address, end))
                {
                    area.Protection = protection;
                }

                // Narrow present PTEs now; widening is left to the write fault, which knows whether COW is needed.
                var state = new ProtectState(protection);
                _pageTable.ForEachLeaf(address, end, ref state, static (PageTableLeaf leaf, int first, int last, ref ProtectState s) =>
                {
                    using (leaf.Lock.EnterScope())
                    {
                        leaf.BeginChange(); // Protection.None revokes reads
                        for (var i = first; i <= last; i++)
                        {
                            ref var entry = ref leaf.Entries[i];
                            while (true)
                            {
                                var pte = Volatile.Read(ref entry);
                                if (!Pte.IsPresent(pte))
                                {
                                    break;
                                }

                                var updated = s.Protection == Protection.None ? (pte | Pte.ProtNone) & ~Pte.Write : pte & ~Pte.ProtNone;
                                if ((s.Protection & Protection.Write) == 0)
                                {
                                    updated &= ~Pte.Write;
                                }

                                if (updated == pte || Interlocked.CompareExchange(ref entry, updated, pte) == pte)
                                {
                                    s.Narrowed |= updated != pte;
                                    break;
                                }
                            }
                        }

                        leaf.EndChange();
                    }
                });

                if (state.Narrowed)
                {
                    TlbShootdown.Flush();
                }
            }
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }
    }

    /// <summary>
    /// Clears the soft-dirty bits of the whole space (<c>echo 4 &gt; /proc/pid/clear_refs</c>): present pages become
    /// write-protected so the next write faults and marks them soft-dirty again.
    /// </summary>
    public void ClearSoftDirty()
    {
        _mmapLock.EnterWriteLock();
        try
        {
            ThrowIfDisposed();
            var narrowed = false;
            var scopes = new List<NotifierList.Scope>();
            try
            {
                foreach (var area in _areas.Areas)
                {
                    scopes.Add(_notifiers.Start(new NotifierRange(area.Start, area.End, NotifierEvent.SoftDirty)));
                    area.SoftDirty = false;
                    _pageTable.ForEachLeaf(area.Start, area.End, ref narrowed, static (PageTableLeaf leaf, int first, int last, ref bool narrowedAny) =>
                    {
                        using (leaf.Lock.EnterScope())
                        {
                            for (var i = first; i <= last; i++)
                            {
                                ref var entry = ref leaf.Entries[i];
                                while (true)
                                {
                                    var pte = Volatile.Read(ref entry);
                                    if (Pte.IsNone(pte))
                                    {
                                        break;
                                    }

                                    var updated = pte & ~(Pte.SoftDirty | Pte.Write);
                                    if (updated == pte || Interlocked.CompareExchange(ref entry, updated, pte) == pte)
                                    {
                                        narrowedAny |= Pte.Has(pte, Pte.Write);
                                        break;
                                    }
                                }
                            }
                        }
                    });
                }

                if (narrowed)
                {
                    TlbShootdown.Flush();
                }
            }
            finally
            {
                foreach (var scope in scopes)
                {
                    scope.Dispose();
                }
            }
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }
    }

    private struct ProtectState(Protection protection)
    {
        public readonly Protection Protection = protection;
        public bool Narrowed;
    }
}
