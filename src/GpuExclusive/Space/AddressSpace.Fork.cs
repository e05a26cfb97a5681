using GpuExclusive.Diagnostics;
using GpuExclusive.Memory;
using GpuExclusive.Notifiers;
using GpuExclusive.Paging;

namespace GpuExclusive;

// fork (Linux dup_mmap / copy_page_range).
public sealed partial class AddressSpace
{
    /// <summary>
    /// Creates a child space with the same areas (<c>fork</c>). Private pages are shared copy-on-write: read-only in
    /// both, the next write in either copies. Shared areas map the same pages. mlock is not inherited. A device-exclusive
    /// page is first restored in the parent (the device loses it), so the child never gets a device-exclusive entry;
    /// where Linux would fail the fork with ENOMEM on a busy page lock, this waits for the lock.
    /// </summary>
    public AddressSpace Fork()
    {
        _mmapLock.EnterWriteLock();
        try
        {
            ThrowIfDisposed();
            var child = new AddressSpace(_pool, _loggerFactory);
            var scopes = new List<NotifierList.Scope>();
            var state = new ForkState(this, child);
            try
            {
                foreach (var area in _areas.Areas)
                {
                    var copy = area.CloneForFork();
                    child._areas.Insert(copy);
                    if (!area.IsPrivate)
                    {
                        continue; // shared pages fault in from the shared object (Linux does not copy these PTEs)
                    }

                    // The device loses write access to private pages: they become copy-on-write.
                    scopes.Add(_notifiers.Start(new NotifierRange(area.Start, area.End, NotifierEvent.Protection)));
                    state.Area = area;
                    _pageTable.ForEachLeaf(area.Start, area.End, ref state, static (PageTableLeaf leaf, int first, int last, ref ForkState s) =>
                        s.Parent.CopyLeafForFork(leaf, first, last, ref s));
                }

                if (state.WriteProtected)
                {
                    // A parent store through a PTE that was writable must land before the child can see the frame.
                    TlbShootdown.Flush();
                }
            }
            catch
            {
                child.Dispose();
                throw;
            }
            finally
            {
                foreach (var scope in scopes)
                {
                    scope.Dispose();
                }
            }

            child._nextMapAddress = _nextMapAddress;
            EngineMetrics.Forks.Add(1);
            SpaceLog.Forked(_logger, Id, child.Id, state.Shared);
            return child;
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }
    }

    /// <summary>Copies one parent leaf's private PTEs into the child (<c>copy_pte_range</c>).</summary>
    private void CopyLeafForFork(PageTableLeaf leaf, int first, int last, ref ForkState state)
    {
        // copy_nonpresent_pte: device-exclusive entries are restored in the parent first, so the child never gets one.
        // Waiting for the page lock (not trylock) is where we improve on Linux's ENOMEM. No new entry can appear after
        // this pass: a grant needs the mmap lock, which we hold for writing.
        for (var i = first; i <= last; i++)
        {
            var pte = Volatile.Read(ref leaf.Entries[i]);
            while (Pte.IsDeviceExclusive(pte))
            {
                RestoreDeviceExclusiveLocked(state.Area!, leaf, leaf.AddressOf(i), pte);
                pte = Volatile.Read(ref leaf.Entries[i]);
            }
        }

        var childLeaf = state.Child._pageTable.GetOrCreateLeaf(leaf.BaseAddress);
        using (leaf.Lock.EnterScope())
        {
            for (var i = first; i <= last; i++)
            {
                ref var entry = ref leaf.Entries[i];
                long pte;
                while (true)
                {
                    pte = Volatile.Read(ref entry);
                    var readOnly = pte & ~Pte.Write;
                    if (Pte.IsNone(pte) || readOnly == pte || Interlocked.CompareExchange(ref entry, readOnly, pte) == pte)
                    {
                        state.WriteProtected |= readOnly != pte;
                        pte = readOnly;
                        break;
                    }
                }

                if (Pte.IsNone(pte))
                {
                    continue;
                }

                // The frame is now mapped by two spaces: neither may write it in place until one is alone again.
                var frame = Pte.Frame(pte);
                _pool.ClearFlags(frame, FrameFlags.AnonExclusive);
                _pool.Get(frame);
                state.Child.AddMapping(frame, leaf.AddressOf(i));
                Volatile.Write(ref childLeaf.Entries[i], pte & ~Pte.Young);
                state.Shared++;
            }
        }
    }

    private struct ForkState(AddressSpace parent, AddressSpace child)
    {
        public readonly AddressSpace Parent = parent;
        public readonly AddressSpace Child = child;
        public Vma? Area;
        public bool WriteProtected;
        public int Shared;
    }
}
