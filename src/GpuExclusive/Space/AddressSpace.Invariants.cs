using GpuExclusive.Memory;
using GpuExclusive.Paging;

namespace GpuExclusive;

// What the invariant checker needs to see of a space, under its mmap lock.
public sealed partial class AddressSpace
{
    internal void EnterExclusive() => _mmapLock.EnterWriteLock();

    internal void ExitExclusive() => _mmapLock.ExitWriteLock();

    /// <summary>
    /// Adds every mapping of this space to <paramref name="mappings"/> (frame → (space, page) list) and reports
    /// per-PTE rule breaks. Caller holds the mmap lock for writing (<see cref="EnterExclusive"/>).
    /// </summary>
    internal void CollectMappingsLocked(Dictionary<long, List<long>> mappings, HashSet<SharedMemoryObject> sharedObjects, List<string> violations)
    {
        AssertMmapLockHeld();
        foreach (var area in _areas.Areas)
        {
            if (area.SharedObject is { } shared)
            {
                sharedObjects.Add(shared);
            }
        }

        foreach (var leaf in _pageTable.AllLeaves())
        {
            for (var i = 0; i < PageTableLeaf.EntryCount; i++)
            {
                var pte = Volatile.Read(ref leaf.Entries[i]);
                if (Pte.IsNone(pte))
                {
                    continue;
                }

                var address = leaf.AddressOf(i);
                var frame = Pte.Frame(pte);
                var area = _areas.Find(address);
                if (area is null)
                {
                    violations.Add($"space {Id}: PTE {Pte.Describe(pte)} at 0x{address:x} outside every mapping");
                    continue;
                }

                if (!Pte.IsPresent(pte) && !Pte.IsDeviceExclusive(pte))
                {
                    violations.Add($"space {Id}: malformed PTE {Pte.Describe(pte)} at 0x{address:x}");
                    continue;
                }

                if (frame >= _pool.Capacity)
                {
                    violations.Add($"space {Id}: PTE at 0x{address:x} names frame {frame} beyond the pool");
                    continue;
                }

                var flags = _pool.Flags(frame);
                // #1 holds where entries are created (a grant needs a private writable mapping); a later Protect keeps
                // the entry (docs/architecture.md, "fork, unmap, protect, discard"), so a read-only private mapping may still hold one.
                if (Pte.IsDeviceExclusive(pte) && !(area.IsPrivate && (flags & FrameFlags.Anon) != 0))
                {
                    violations.Add($"space {Id}: device-exclusive entry at 0x{address:x} in {area} for a frame with flags {flags} (#1: only private anon)");
                }

                if (area.IsPrivate && Pte.IsWritable(pte) && (flags & FrameFlags.AnonExclusive) == 0)
                {
                    violations.Add($"space {Id}: writable private PTE at 0x{address:x} on frame {frame} that is not AnonExclusive (a COW page written in place)");
                }

                if (Pte.IsWritable(pte) && !area.IsWritable)
                {
                    violations.Add($"space {Id}: writable PTE at 0x{address:x} in read-only {area}");
                }

                if (!mappings.TryGetValue(frame, out var list))
                {
                    mappings[frame] = list = [];
                }

                list.Add(Memory.ReverseMap.Encode(Id, address >> PagePool.PageShift));
            }
        }
    }

    /// <summary>The precondition of every <c>…Locked</c> method of the space (DEBUG builds).</summary>
    [System.Diagnostics.Conditional("DEBUG")]
    private void AssertMmapLockHeld() =>
        System.Diagnostics.Debug.Assert(_mmapLock.IsHeld, "this method runs under the space's mmap lock (docs/architecture.md, \"lock order\")");
}
