using System.Runtime.InteropServices;
using static GpuExclusive.Cli.Stress.CounterLayout;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The churn thread's forks: each child must be a snapshot of the parent isolated by copy-on-write in both directions,
/// and must never hold a device-exclusive entry.
/// </summary>
internal sealed partial class StressWorkload
{
    /// <summary>
    /// Forks, and checks that the child is a snapshot: between what the parent showed before and after the fork,
    /// stable while the parent keeps changing, and isolated from the parent by copy-on-write in both directions.
    /// </summary>
    private void ForkAndCheck(ref SplitMix64 random)
    {
        int page = random.NextInt(_options.CounterPages);
        bool grandchild = random.NextInt(4) == 0;
        ulong counters = Counter(_counters, page, 0);
        ulong churnSlot = ChurnSlot(_counters, page);
        Span<int> before = stackalloc int[CountersPerPage];
        Span<int> snapshot = stackalloc int[CountersPerPage];
        Span<int> after = stackalloc int[CountersPerPage];
        Span<int> again = stackalloc int[CountersPerPage];

        _space.Read(counters, MemoryMarshal.AsBytes(before));
        using (AddressSpace child = _space.Fork())
        {
            CheckChildHoldsNothingExclusive(child);
            child.Read(counters, MemoryMarshal.AsBytes(snapshot));
            _space.Read(counters, MemoryMarshal.AsBytes(after));
            for (int c = 0; c < CountersPerPage; c++)
            {
                if (!NotBehind(snapshot[c], before[c]) || !NotBehind(after[c], snapshot[c]))
                    Violate($"fork: counter 0x{Counter(_counters, page, c):x} was {before[c]} before the fork, {snapshot[c]} in the child, {after[c]} in the parent after");
            }

            for (int w = 0; w < _options.CpuThreads; w++)
            {
                long slot = child.Read<long>(WorkerSlot(_counters, page, w));
                if (slot != 0 && SlotOwner(slot) != w)
                    Violate($"fork: the child's copy of worker {w}'s slot on page {page} holds 0x{slot:x}, written by no such worker");
            }

            long childChurn = child.Read<long>(churnSlot);
            if (childChurn != _churnSlots[page])
                Violate($"fork: the child's churn slot 0x{churnSlot:x} holds 0x{childChurn:x}, the parent had 0x{_churnSlots[page]:x}");

            // Copy-on-write, child to parent.
            long childValue = NextChurnValue();
            child.Write(churnSlot, childValue);
            long parentChurn = _space.Read<long>(churnSlot);
            if (parentChurn != _churnSlots[page])
                Violate($"fork: the child's write to 0x{churnSlot:x} leaked into the parent (0x{parentChurn:x})");

            // Copy-on-write, parent to child.
            long parentValue = NextChurnValue();
            _space.Write(churnSlot, parentValue);
            _churnSlots[page] = parentValue;
            long childSees = child.Read<long>(churnSlot);
            if (childSees != childValue)
                Violate($"fork: the parent's write to 0x{churnSlot:x} leaked into the child (0x{childSees:x}, expected 0x{childValue:x})");

            child.Read(counters, MemoryMarshal.AsBytes(again));
            if (!again.SequenceEqual(snapshot))
                Violate($"fork: the child's counters on page {page} changed while only the parent was written");

            for (int s = 0; s < StressOptions.ScratchPages; s++)
            {
                ulong address = _scratch + ((ulong)s * PagePool.PageSize);
                long value = child.Read<long>(address);
                if (value != _scratchPatterns[s])
                    Violate($"fork: the child's scratch page 0x{address:x} starts with 0x{value:x}, the parent's with 0x{_scratchPatterns[s]:x}");
            }

            // The child works: an add of its own, seen by it alone.
            int childAdd = child.AtomicAdd(counters, 1);
            if (childAdd != unchecked(snapshot[0] + 1))
                Violate($"fork: the child's AtomicAdd on 0x{counters:x} returned {childAdd}, its copy held {snapshot[0]}");
            child.Write(counters, snapshot[0]);
            CheckChildHoldsNothingExclusive(child);

            if (grandchild)
            {
                using AddressSpace grand = child.Fork();
                CheckChildHoldsNothingExclusive(grand);
                grand.Read(counters, MemoryMarshal.AsBytes(again));
                long grandChurn = grand.Read<long>(churnSlot);
                if (!again.SequenceEqual(snapshot) || grandChurn != childValue)
                    Violate($"fork: a fork of the child does not match the child on page {page}");
                _churnStats.GrandchildForks++;
            }
        }

        _churnStats.Forks++;
    }

    /// <summary>A forked child never holds device-exclusive entries (docs/architecture.md, "fork, unmap, protect, discard"): Inspect every page it shares with devices.</summary>
    private void CheckChildHoldsNothingExclusive(AddressSpace child)
    {
        for (int page = 0; page <= _options.CounterPages; page++)
        {
            ulong address = page == _options.CounterPages ? _permutation : _counters + ((ulong)page * PagePool.PageSize);
            PageInfo info = child.Inspect(address);
            if (info.State == PageState.DeviceExclusive)
                Violate($"fork: the child holds a device-exclusive entry at 0x{address:x} ({info})", Invariants.ForkChildren);
        }

        Interlocked.Add(ref _childPagesInspected, _options.CounterPages + 1);
    }
}
