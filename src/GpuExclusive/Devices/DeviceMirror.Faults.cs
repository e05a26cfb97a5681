using System.Diagnostics;
using GpuExclusive.Devices;
using GpuExclusive.Kernels;

namespace GpuExclusive;

// Replayable device faults and the device quantum (docs/architecture.md, "device faults and the quantum"): a kernel
// thread that faults records the op and waits for the page; the thread running the batch maps it while the kernel
// runs; a revocation of a page granted that way waits out the quantum, and for the faulting thread to use the page.
public sealed partial class DeviceMirror
{
    // Pages granted to serve a running batch, by slot: until when the device keeps each, and the op whose fault the
    // grant served. Guarded by _lock. Empty while no batch runs, so an idle revocation only tests its count.
    private readonly Dictionary<int, Hold> _holds = [];

    /// <summary>
    /// A grant's claim on its page: the device keeps it until <see cref="Until"/> (a <see cref="Stopwatch"/> timestamp)
    /// and, while its launch runs, until the thread that faulted on <see cref="FloorOp"/> has used it.
    /// </summary>
    private readonly record struct Hold(long Until, int FloorOp, LaunchFaults? Launch, DeviceBatch Batch);

    /// <summary>
    /// The host's half of replayable faults, called over and over by the thread that runs the batch while its launch runs:
    /// takes what the kernel recorded in its fault ring, and grants and maps the pages the kernel waits for (or refuses
    /// the ops whose pages can never be granted). Returns true when it mapped or refused something.
    /// </summary>
    internal bool ServiceLaunchFaults(LaunchFaults launch) => ServiceLaunchFaults(launch, _device.Launcher.FaultCount);

    /// <summary><see cref="ServiceLaunchFaults(LaunchFaults)"/> with the fault count read (separate for tests).</summary>
    internal bool ServiceLaunchFaults(LaunchFaults launch, int count)
    {
        if (count == launch.Consumed && launch.Wanted.Count == 0)
        {
            return false;
        }

        TakeRecordedFaults(launch, count);
        if (launch.Wanted.Count == 0)
        {
            return false;
        }

        var refused = 0;
        var runs = new List<(ulong Start, ulong End)>();
        foreach (var page in launch.Wanted.Keys.Order())
        {
            var address = page << PagePool.PageShift;
            var status = Space.ClassifyForAtomic(address);
            if (status != AccessStatus.Ok)
            {
                // Never grantable now: refuse the op the thread waits on, so it moves on; its other ops on the page are
                // left pending and refused after the launch, with the rest of the batch's.
                var op = launch.Wanted[page];
                var state = status == AccessStatus.NotMapped ? OpState.NotMapped : OpState.PermissionDenied;
                if (Interlocked.CompareExchange(ref launch.States[op], state, OpState.Pending) == OpState.Pending)
                {
                    launch.Batch.Refused++;
                }

                launch.Wanted.Remove(page);
                refused++;
                lock (_lock)
                {
                    // Unmark the page: the next thread that faults on it records a fault, and is refused in turn.
                    _pageTable.Unmark(page);
                }

                continue;
            }

            if (runs.Count > 0 && runs[^1].End == address)
            {
                runs[^1] = (runs[^1].Start, address + PagePool.PageSize);
            }
            else
            {
                runs.Add((address, address + PagePool.PageSize));
            }
        }

        var mapped = 0;
        if (runs.Count > 0)
        {
            var held = new List<GrantedPage>();
            try
            {
                mapped = GrantAndMap(runs, held, launch.Batch, launch, serviced: true);
            }
            catch (Exception ex) when (ex is MemoryAccessException or NotSupportedException)
            {
                // The mapping changed since the page was classified: the next call classifies it again.
            }
            finally
            {
                // Released at once: the quantum is the hold, which revocations wait out, not the frame lock.
                ReleaseAll(held);
            }
        }

        return mapped + refused > 0;
    }

    /// <summary>Moves the fault ring's new entries into <see cref="LaunchFaults.Wanted"/> (pages not mapped Atomic now).</summary>
    private void TakeRecordedFaults(LaunchFaults launch, int count)
    {
        var ring = launch.Ring;
        var mask = (int)ring.Length - 1;
        lock (_lock)
        {
            ThrowIfDisposedLocked();
            var consumed = launch.Consumed;
            if (count - consumed < 0)
            {
                // The count went back: the records were reset after this launch's service first looked, and what it
                // took then was a previous launch's. Start over (launches reset before the service starts; a defence).
                consumed = 0;
            }

            if (count - consumed > ring.Length)
            {
                // Lapped: some records were overwritten. The threads that wrote them give up waiting in time and the
                // batch is scanned after the launch; take what is there now.
                launch.Overflowed = true;
                consumed = count - (int)ring.Length;
            }

            while (consumed != count)
            {
                ref var entry = ref ring[consumed & mask];
                var recorded = Volatile.Read(ref entry);
                if (recorded == 0)
                {
                    break; // counted but not written yet: the next call takes it
                }

                // Zero it only if it still holds what was read: a kernel that lapped the ring meanwhile wrote a newer
                // record here, which a plain store would wipe — and the consumer would stall at this slot, one lap on.
                Interlocked.CompareExchange(ref entry, 0, recorded);
                consumed++;
                var op = recorded - 1;
                var slot = launch.Batch.Ops[op].Slot;
                if (DevicePte.Permission(_pageTable.Entry(slot)) != DevicePte.Atomic)
                {
                    launch.Wanted.TryAdd(_pageTable.PageOf(slot), op);
                }
            }

            launch.Consumed = consumed;

            // Pages mapped meanwhile (another grant, MakeExclusive) need nothing: their threads see the entry.
            if (launch.Wanted.Count > 0)
            {
                List<ulong>? done = null;
                foreach (var page in launch.Wanted.Keys)
                {
                    if (_pageTable.TryGetSlot(page, out var slot) && DevicePte.Permission(_pageTable.Entry(slot)) == DevicePte.Atomic)
                    {
                        (done ??= []).Add(page);
                    }
                }

                done?.ForEach(page => launch.Wanted.Remove(page));
            }
        }
    }

    /// <summary>
    /// Records a hold on a page just mapped Atomic for <paramref name="batch"/> (under the mirror lock). With
    /// <paramref name="serviced"/>, the grant served the launch's recorded fault on the page, whose op becomes the
    /// floor (only the thread that services the launch owns <see cref="LaunchFaults.Wanted"/>).
    /// </summary>
    private void AddHoldLocked(int slot, ulong page, DeviceBatch batch, LaunchFaults? launch, bool serviced)
    {
        AssertMirrorLockHeld();
        var floor = -1;
        if (serviced && launch is not null && launch.Wanted.Remove(page, out var op))
        {
            floor = op;
        }

        _holds[slot] = new Hold(Stopwatch.GetTimestamp() + _device.QuantumTicks, floor, launch, batch);
        batch.HoldSlots.Add(slot);
    }

    /// <summary>Drops the holds a finished run left (their launches are over; the quantum of the last grants ends with the run).</summary>
    private void DropHolds(DeviceBatch batch)
    {
        lock (_lock)
        {
            foreach (var slot in batch.HoldSlots)
            {
                if (_holds.TryGetValue(slot, out var hold) && ReferenceEquals(hold.Batch, batch))
                {
                    _holds.Remove(slot);
                }
            }

            batch.HoldSlots.Clear();
            batch.RunEnded = true; // under the lock GrantAndMap tests it under: no hold of this run can come after
        }
    }

    /// <summary>
    /// True when a grant may still add holds for <paramref name="batch"/> (under the mirror lock): its run has not
    /// ended, and <paramref name="launch"/>, if the grant serves one, still runs. The run's end is what makes a late hold
    /// leak; the launch test also refuses a grant for a launch of an earlier use of a reused batch, whose
    /// <see cref="DeviceBatch.RunEnded"/> the new use cleared.
    /// </summary>
    private bool AcceptsHoldsLocked(DeviceBatch batch, LaunchFaults? launch)
    {
        AssertMirrorLockHeld();
        return !batch.RunEnded && (launch is null || launch.Running);
    }

    /// <summary>Holds left now (for tests: none once no run is in progress).</summary>
    internal int HoldCount
    {
        get
        {
            lock (_lock)
            {
                return _holds.Count;
            }
        }
    }

    /// <summary>Reports holds that outlived their run: a hold nothing will ever drop (under the mirror lock).</summary>
    private void CollectHoldViolationsLocked(List<string> violations)
    {
        AssertMirrorLockHeld();
        foreach (var (slot, hold) in _holds)
        {
            if (hold.Batch.RunEnded || !hold.Batch.HoldSlots.Contains(slot))
            {
                violations.Add($"device {_device.Name}: a hold on page 0x{_pageTable.PageOf(slot) << PagePool.PageShift:x} outlived the batch run it served (#6)");
            }
        }
    }

    /// <summary>
    /// Gives a page a CPU access has just taken back to the device again, if a thread of the running launch waits for
    /// it (its device PTE is marked <see cref="DevicePte.Wanted"/>): run on the CPU access's own thread once the access
    /// is done (<see cref="AddressSpace.DeferUntilAccessDone"/>), so the device does not wait for the servicing thread to
    /// be scheduled. Best effort: anything that goes wrong leaves the page to that thread.
    /// </summary>
    internal sealed class PageReturn(DeviceMirror mirror, ulong address, LaunchFaults launch)
    {
        // How long the CPU access that took the page waits for a thread of the batch to want it back: 10 µs.
        private static readonly long WantedWaitTicks = Stopwatch.Frequency / 100_000;

        internal void Run()
        {
            if (!launch.Running || mirror._device.Executor.Failure is not null || mirror.IsDisposed)
            {
                return;
            }

            int slot;
            lock (mirror._lock)
            {
                if (mirror._disposed || !mirror._pageTable.TryGetSlot(address >> PagePool.PageShift, out slot))
                {
                    return;
                }
            }

            // A thread of the batch reaches the page again within a few ops if it still uses it: wait that long for
            // its mark, then give the page back only if it came.
            var until = Stopwatch.GetTimestamp() + WantedWaitTicks;
            long entry;
            while (!DevicePte.IsWanted(entry = mirror._pageTable.Entry(slot)) && DevicePte.Permission(entry) != DevicePte.Atomic && Stopwatch.GetTimestamp() < until)
            {
                Thread.SpinWait(8);
            }

            if (DevicePte.Permission(entry) == DevicePte.Atomic || !DevicePte.IsWanted(entry) || !launch.Running)
            {
                return; // mapped already, nobody waits for it, or the launch that wanted it is over
            }

            Grant();
        }

        /// <summary>
        /// The grant itself. The launch may end, and its run with it, at any moment before the grant takes the mirror
        /// lock: <c>GrantAndMap</c> then maps nothing (no hold may outlive the run). Returns the pages mapped.
        /// </summary>
        internal int Grant()
        {
            var held = new List<GrantedPage>();
            try
            {
                return mirror.GrantAndMap([(address, address + PagePool.PageSize)], held, launch.Batch, launch, serviced: false);
            }
            catch (Exception ex) when (ex is MemoryAccessException or NotSupportedException or ObjectDisposedException or DeviceFailedException or InsufficientMemoryException)
            {
                // The mapping or the device changed meanwhile: the servicing thread sorts it out.
                return 0;
            }
            finally
            {
                mirror.ReleaseAll(held);
            }
        }
    }

    /// <summary>
    /// A revocation of a held page waits here, before it clears the device PTE, for the rest of the quantum, and then —
    /// while the grant's launch runs — until the thread whose fault the grant served has used the page (it clears its
    /// "awaited op" word only once it has published its hazard word and read the entry Atomic, so the hazard wait that
    /// follows covers its op). Both are bounded: the quantum by the setting, the floor by the device deadline.
    /// </summary>
    private void WaitOutHold(in Hold hold)
    {
        // A busy wait, not a yield: the quantum is microseconds, and a yielded core on a busy machine comes back only
        // after a scheduler slice of milliseconds.
        while (Stopwatch.GetTimestamp() < hold.Until)
        {
            Thread.SpinWait(16);
        }

        var spin = default(SpinWait);

        if (hold.Launch is not { } launch || hold.FloorOp < 0)
        {
            return;
        }

        var floor = hold.FloorOp;
        var owner = launch.OwnerOf(floor);
        var deadline = _device.Executor.StartDeadline();
        while (launch.Running
            && Volatile.Read(ref launch.States[floor]) == OpState.Pending
            && _device.Launcher.Awaits(owner, floor)
            && _device.Executor.Failure is null)
        {
            if (deadline.ExpiredWhileSpinning())
            {
                _device.Executor.Fail("a kernel thread to use a page granted for its fault");
                return;
            }

            spin.SpinOnce(sleep1Threshold: -1);
        }
    }
}
