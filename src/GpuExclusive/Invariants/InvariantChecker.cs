using GpuExclusive.Memory;
using GpuExclusive.Paging;

namespace GpuExclusive.Diagnostics;

/// <summary>
/// Checks the frame-accounting invariants (docs/architecture.md) across a pool and every address space using it:
/// #1 device-exclusive entries only in private writable anon mappings; #3 an Atomic device PTE only over a device-exclusive CPU entry of the same frame; #2 each frame's MapCount equals the PTEs
/// (present or device-exclusive) mapping it, its RefCount is at least MapCount plus shared-object references (equal when nothing is in flight), and the
/// reverse map lists exactly those PTEs; #5 every frame not referenced is free.
/// </summary>
/// <remarks>
/// Takes every space's mmap lock for writing (in id order, so two checkers cannot deadlock), which stops faults and
/// mapping changes; plain CPU accesses to present pages go on, and they change no counts.
/// </remarks>
public static class InvariantChecker
{
    /// <summary>Throws <see cref="InvariantViolationException"/> when any invariant is broken.</summary>
    public static void Check(PagePool pool)
    {
        var violations = Collect(pool);
        if (violations.Count > 0)
        {
            throw new InvariantViolationException(violations);
        }
    }

    /// <summary>Every broken invariant, one line each; empty when all hold.</summary>
    public static List<string> Collect(PagePool pool)
    {
        ArgumentNullException.ThrowIfNull(pool);
        var spaces = InvariantRegistry.Of<AddressSpace>(pool).OrderBy(static s => s.Id).ToList();
        var locked = new List<AddressSpace>();
        var violations = new List<string>();
        try
        {
            foreach (var space in spaces)
            {
                space.EnterExclusive();
                locked.Add(space);
            }

            // A space created (forked) after the snapshot maps frames the walk would not see: lock it too, until the set
            // is stable. Ids only grow, so the new ones come after every space already held and the order holds.
            while (InvariantRegistry.Of<AddressSpace>(pool).Where(s => !locked.Contains(s)).OrderBy(static s => s.Id).ToList() is { Count: > 0 } added)
            {
                foreach (var space in added)
                {
                    space.EnterExclusive();
                    locked.Add(space);
                }
            }

            var mappings = new Dictionary<long, List<long>>();
            var sharedObjects = new HashSet<SharedMemoryObject>();
            foreach (var space in locked.Where(static s => !s.IsDisposed))
            {
                space.CollectMappingsLocked(mappings, sharedObjects, violations);
            }

            foreach (var space in locked.Where(static s => !s.IsDisposed))
            {
                foreach (var mirror in InvariantRegistry.Of<DeviceMirror>(space))
                {
                    mirror.CollectViolations(violations);
                }
            }

            var objectReferences = new Dictionary<long, int>();
            foreach (var frame in sharedObjects.SelectMany(static o => o.Frames()))
            {
                objectReferences[frame] = objectReferences.GetValueOrDefault(frame) + 1;
            }

            long unreferenced = 0;
            for (long frame = 0; frame < pool.Capacity; frame++)
            {
                ref var meta = ref pool.Meta(frame);
                var mapCount = Volatile.Read(ref meta.MapCount);
                var refCount = Volatile.Read(ref meta.RefCount);
                var ptes = mappings.GetValueOrDefault(frame) ?? [];
                var expectedRefs = ptes.Count + objectReferences.GetValueOrDefault(frame);
                if (mapCount != ptes.Count)
                {
                    violations.Add($"frame {frame}: MapCount {mapCount} but {ptes.Count} PTE(s) map it (#2)");
                }

                // RefCount >= MapCount (docs/architecture.md, invariant 2), not equality: a grant holder (the driver's folio reference, kept
                // across the kernel launch without the mmap lock) and a revoker hold transient references.
                if (refCount < expectedRefs)
                {
                    violations.Add($"frame {frame}: RefCount {refCount}, expected {expectedRefs} ({ptes.Count} mapping(s) + {expectedRefs - ptes.Count} shared-object reference(s)) (#2)");
                }

                var rmap = pool.Rmap.Snapshot(frame);
                if (!rmap.Order().SequenceEqual(ptes.Order()))
                {
                    violations.Add($"frame {frame}: reverse map lists {rmap.Count} mapping(s) but {ptes.Count} PTE(s) map it");
                }

                if (refCount == 0)
                {
                    unreferenced++;
                    if (FrameLock.IsLocked(ref meta.State))
                    {
                        violations.Add($"frame {frame}: free but locked");
                    }
                }
            }

            if (unreferenced != pool.FreePages)
            {
                violations.Add($"pool: {unreferenced} frame(s) unreferenced but FreePages is {pool.FreePages} (#5)");
            }
        }
        finally
        {
            foreach (var space in locked)
            {
                space.ExitExclusive();
            }
        }

        return violations;
    }
}
