using static GpuExclusive.Cli.Stress.CounterLayout;

namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The churn thread: changes the mappings under the workers and devices (forks, in StressWorkload.Fork.cs; protect
/// windows, soft-dirty clears, lock/unlock, discards and unmap/remap of the scratch region) and checks each change.
/// </summary>
internal sealed partial class StressWorkload
{
    private void ChurnLoop(ThreadActivity activity)
    {
        var random = SplitMix64.ForThread(_options.Seed, MaxWorkers);
        while (!_stop)
        {
            switch (random.NextInt(6))
            {
                case 0: activity.Enter("Fork + check child"); ForkAndCheck(ref random); break;
                case 1: activity.Enter("Protect window"); ProtectWindow(ref random); break;
                case 2: activity.Enter("ClearSoftDirty"); ClearSoftDirtyAndCheck(ref random); break;
                case 3: activity.Enter("Lock/Unlock"); LockAndUnlock(ref random); break;
                case 4: activity.Enter("Discard scratch"); DiscardScratch(ref random); break;
                default: activity.Enter("Unmap/Map scratch"); RemapScratch(ref random); break;
            }

            // Leave the workers most of the machine: churn operations are heavy and CI has two cores.
            activity.Enter("sleeping");
            Thread.Sleep(1);
        }
    }

    private long NextChurnValue() => unchecked((0x0C4E_0000L << 32) | ++_churnSequence);

    /// <summary>Makes a random run of counter pages read-only for a moment, then read-write again.</summary>
    private void ProtectWindow(ref SplitMix64 random)
    {
        int first = random.NextInt(_options.CounterPages);
        int count = 1 + random.NextInt(_options.CounterPages - first);
        ulong address = _counters + ((ulong)first * PagePool.PageSize);
        ulong length = (ulong)count * PagePool.PageSize;
        ulong churnSlot = ChurnSlot(_counters, first);

        _protectGate.EnterWriteLock();
        Interlocked.Increment(ref _protectEpoch);
        try
        {
            _space.Protect(address, length, Protection.Read);
            try
            {
                _space.Write(churnSlot, NextChurnValue());
                Violate($"protect: a write to 0x{churnSlot:x} succeeded while the page was read-only");
            }
            catch (MemoryAccessException e) when (e.IsWrite)
            {
            }

            long value = _space.Read<long>(churnSlot);
            if (value != _churnSlots[first])
                Violate($"protect: a rejected write to 0x{churnSlot:x} changed it to 0x{value:x}");

            // Give the workers a chance to run into the window.
            Thread.Yield();
            _space.Protect(address, length, Protection.ReadWrite);
        }
        finally
        {
            Interlocked.Increment(ref _protectEpoch);
            _protectGate.ExitWriteLock();
        }

        _churnStats.ProtectWindows++;
    }

    /// <summary>Checks soft-dirty on a scratch page that only this thread touches: cleared, untouched by a read, set by a write.</summary>
    private void ClearSoftDirtyAndCheck(ref SplitMix64 random)
    {
        int page = random.NextInt(StressOptions.ScratchPages);
        ulong address = _scratch + ((ulong)page * PagePool.PageSize);
        long first = NextChurnValue();
        long second = NextChurnValue();

        _space.Write(address, first);
        _scratchPatterns[page] = first;
        _space.ClearSoftDirty();
        PageInfo cleared = _space.Inspect(address);
        if (cleared.State != PageState.Present || cleared.SoftDirty)
            Violate($"soft-dirty: after ClearSoftDirty the written page 0x{address:x} shows {cleared}");

        long value = _space.Read<long>(address);
        if (value != first)
            Violate($"soft-dirty: ClearSoftDirty changed 0x{address:x} from 0x{first:x} to 0x{value:x}");
        if (_space.Inspect(address).SoftDirty)
            Violate($"soft-dirty: a read of 0x{address:x} set SoftDirty");

        _space.Write(address, second);
        _scratchPatterns[page] = second;
        PageInfo written = _space.Inspect(address);
        if (!written.SoftDirty || !written.Dirty)
            Violate($"soft-dirty: a write to 0x{address:x} after ClearSoftDirty left {written}");
        _churnStats.SoftDirtyClears++;
    }

    private void LockAndUnlock(ref SplitMix64 random)
    {
        int first = random.NextInt(_options.CounterPages);
        int count = 1 + random.NextInt(_options.CounterPages - first);
        ulong address = _counters + ((ulong)first * PagePool.PageSize);
        ulong length = (ulong)count * PagePool.PageSize;
        _space.Lock(address, length);
        _space.Lock(_scratch, _scratchBytes);
        _space.Unlock(address, length);
        _space.Unlock(_scratch, _scratchBytes);
        _churnStats.LockUnlocks++;
    }

    /// <summary>Writes a run of scratch pages, discards them (MADV_DONTNEED) and checks they come back as zeros.</summary>
    private void DiscardScratch(ref SplitMix64 random)
    {
        int first = random.NextInt(StressOptions.ScratchPages);
        int count = 1 + random.NextInt(StressOptions.ScratchPages - first);
        ulong start = _scratch + ((ulong)first * PagePool.PageSize);
        for (int s = first; s < first + count; s++)
        {
            ulong page = _scratch + ((ulong)s * PagePool.PageSize);
            long value = NextChurnValue();
            _space.Write(page, value);
            _space.Write(page + PagePool.PageSize - sizeof(long), value);
            _scratchPatterns[s] = value;
        }

        _space.Discard(start, (ulong)count * PagePool.PageSize);
        for (int s = first; s < first + count; s++)
        {
            ulong page = _scratch + ((ulong)s * PagePool.PageSize);
            PageInfo info = _space.Inspect(page);
            if (info.State != PageState.NotPresent)
                Violate($"discard: page 0x{page:x} shows {info} after Discard");
            long head = _space.Read<long>(page);
            long tail = _space.Read<long>(page + PagePool.PageSize - sizeof(long));
            if (head != 0 || tail != 0)
                Violate($"discard: page 0x{page:x} reads 0x{head:x}/0x{tail:x} after Discard, not zeros");
            _scratchPatterns[s] = 0;
        }

        _churnStats.Discards++;
    }

    /// <summary>Punches a hole in the scratch region (splitting it), unmaps the rest, checks access faults, maps it anew.</summary>
    private void RemapScratch(ref SplitMix64 random)
    {
        const int pages = StressOptions.ScratchPages;
        int hole = 1 + random.NextInt(pages - 2);
        ulong holeAddress = _scratch + ((ulong)hole * PagePool.PageSize);

        _space.Unmap(holeAddress, PagePool.PageSize);
        ExpectFault(() => _space.Read<long>(holeAddress), holeAddress, isWrite: false);
        ExpectFault(() => _space.Write(holeAddress, 1L), holeAddress, isWrite: true);
        foreach (int neighbour in (int[])[hole - 1, hole + 1])
        {
            ulong address = _scratch + ((ulong)neighbour * PagePool.PageSize);
            long value = _space.Read<long>(address);
            if (value != _scratchPatterns[neighbour])
                Violate($"unmap: unmapping 0x{holeAddress:x} changed its neighbour 0x{address:x} to 0x{value:x}");
        }

        _space.Unmap(_scratch, (ulong)hole * PagePool.PageSize);
        _space.Unmap(holeAddress + PagePool.PageSize, (ulong)(pages - hole - 1) * PagePool.PageSize);
        ExpectFault(() => _space.Read<long>(_scratch), _scratch, isWrite: false);

        _scratch = _space.Map(_scratchBytes, Protection.ReadWrite);
        Array.Clear(_scratchPatterns);
        long fresh = _space.Read<long>(_scratch + _scratchBytes - sizeof(long));
        if (fresh != 0)
            Violate($"map: a fresh mapping at 0x{_scratch:x} reads 0x{fresh:x}, not zero");
        _churnStats.Remaps++;
    }

    private void ExpectFault(Action access, ulong address, bool isWrite)
    {
        try
        {
            access();
            Violate($"unmap: a {(isWrite ? "write" : "read")} of unmapped 0x{address:x} succeeded");
        }
        catch (MemoryAccessException e)
        {
            if (e.IsWrite != isWrite || e.Address != address)
                Violate($"unmap: a {(isWrite ? "write" : "read")} of unmapped 0x{address:x} failed as '{e.Message}' (IsWrite {e.IsWrite}, Address 0x{e.Address:x})");
        }
    }
}
