using System.Diagnostics;
using System.Runtime.InteropServices;
using static GpuExclusive.Cli.Scenarios.ScenarioContext;

namespace GpuExclusive.Cli.Scenarios;

/// <summary>One named scripted case: it returns normally when it passed and throws <see cref="ScenarioFailedException"/> when not.</summary>
internal sealed record Scenario(string Name, string Description, Action<ScenarioContext> Run);

/// <summary>
/// The named cases of <c>gpux scenario</c>: the three Linux hmm selftests that issue EXCLUSIVE
/// (the Linux selftests' EXCLUSIVE cases, on a 1024-page buffer filled with <c>int[i] = i</c>), ping-pong between the CPU and a device and
/// between two devices, and storms of fork, mprotect and discard against a device that keeps running batches.
/// </summary>
internal static class ScenarioCatalog
{
    private const int SelftestPages = 1024;
    private const ulong Page = PagePool.PageSize;
    private const int IntsPerPage = PagePool.PageSize / sizeof(int);

    public static IReadOnlyList<Scenario> All { get; } =
    [
        new("exclusive", "hmm-tests 'exclusive': grant all 1024 pages, the device reads int[i]=i, the CPU increments every int (revoking each page), nothing stays exclusive.", Exclusive),
        new("exclusive_mprotect", "hmm-tests 'exclusive_mprotect': grant, mprotect(PROT_READ) erases the device entries, a device write is PermissionDenied, unmapping still-exclusive entries frees their frames.", ExclusiveMprotect),
        new("exclusive_cow", "hmm-tests 'exclusive_cow': grant, fork restores the parent's entries, the child never holds one, each side's increments stay private.", ExclusiveCow),
        new("ping-pong-cpu-device", "One page passed back and forth 200 times: a device Add (device fault, grant) then a CPU add (revocation); every add lands once.", PingPongCpuDevice),
        new("ping-pong-two-devices", "Two devices add 1 to the same counter concurrently, each grant revoking the other: both finish, and the old values form a permutation (exactly once).", PingPongTwoDevices),
        new("fork-storm", "100 forks while a device runs batches on the same pages: children never hold device-exclusive entries and see a consistent copy; totals exact; every frame back.", ForkStorm),
        new("mprotect-storm", "Protect read-only / read-write 100 times while a device adds and the CPU adds: refused ops are counted, applied ones land exactly once.", MprotectStorm),
        new("discard-under-load", "A small pool; pages granted, discarded and refilled 200 times while a device runs batches elsewhere: discarded pages read zero for CPU and device, totals exact, every frame back.", DiscardUnderLoad),
    ];

    public static Scenario? Find(string name) => All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase));

    private static ulong MapIota(AddressSpace space, int pages)
    {
        ulong buffer = space.Map((ulong)pages * Page, Protection.ReadWrite);
        var values = new int[pages * IntsPerPage];
        for (int i = 0; i < values.Length; i++)
            values[i] = i;
        space.Write(buffer, MemoryMarshal.AsBytes(values.AsSpan()));
        return buffer;
    }

    private static int[] CpuInts(AddressSpace space, ulong buffer, int pages)
    {
        var values = new int[pages * IntsPerPage];
        space.Read(buffer, MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    private static void IncrementEveryInt(AddressSpace space, ulong buffer, int pages, string who)
    {
        for (int i = 0; i < pages * IntsPerPage; i++)
        {
            ulong at = buffer + ((ulong)i * sizeof(int));
            int value = space.Read<int>(at);
            if (value != i)
                throw new ScenarioFailedException($"{who}: int[{i}] reads {value} before the increment, expected {i}");
            space.Write(at, i + 1);
        }

        int[] after = CpuInts(space, buffer, pages);
        for (int i = 0; i < after.Length; i++)
            Check(after[i] == i + 1, $"{who}: int[{i}] reads {after[i]} after the increment, expected {i + 1}");
    }

    private static void Exclusive(ScenarioContext context)
    {
        using var pool = new PagePool(SelftestPages + 64, context.LoggerFactory);
        using (var space = new AddressSpace(pool, context.LoggerFactory))
        using (DeviceMirror mirror = context.Device().Mirror(space))
        {
            ulong buffer = MapIota(space, SelftestPages);
            ulong length = SelftestPages * Page;
            Expect(SelftestPages, mirror.MakeExclusive(buffer, length), "pages granted (cpages)");
            Expect(SelftestPages, mirror.CountExclusive(buffer, length), "pages the device holds atomically");
            for (int p = 0; p < SelftestPages; p++)
            {
                PageInfo info = space.Inspect(buffer + ((ulong)p * Page));
                Check(info is { State: PageState.DeviceExclusive, MapCount: 1, RefCount: 1 }, $"page {p} after the grant: {info} (expected DeviceExclusive, MapCount 1, RefCount 1)");
            }

            var mirrored = new int[SelftestPages * IntsPerPage];
            Expect(DeviceStatus.Ok, mirror.Read(buffer, MemoryMarshal.AsBytes(mirrored.AsSpan())), "device read of the buffer");
            for (int i = 0; i < mirrored.Length; i++)
                Check(mirrored[i] == i, $"the device reads int[{i}] = {mirrored[i]}, expected {i}");

            IncrementEveryInt(space, buffer, SelftestPages, "CPU");
            Expect(0, mirror.CountExclusive(buffer, length), "pages still exclusive after the CPU touched every one (CHECK_EXCLUSIVE)");
            Invariants(pool, "after the CPU loop");
        }

        AllFramesBack(pool);
    }

    private static void ExclusiveMprotect(ScenarioContext context)
    {
        using var pool = new PagePool(SelftestPages + 64, context.LoggerFactory);
        using (var space = new AddressSpace(pool, context.LoggerFactory))
        using (DeviceMirror mirror = context.Device().Mirror(space))
        {
            ulong buffer = MapIota(space, SelftestPages);
            ulong length = SelftestPages * Page;
            Expect(SelftestPages, mirror.MakeExclusive(buffer, length), "pages granted (cpages)");
            var first = new int[IntsPerPage];
            Expect(DeviceStatus.Ok, mirror.Read(buffer, MemoryMarshal.AsBytes(first.AsSpan())), "device read of page 0");
            Check(first[^1] == IntsPerPage - 1, $"the device reads int[{IntsPerPage - 1}] = {first[^1]}");

            space.Protect(buffer, length, Protection.Read);
            Expect(0, mirror.CountExclusive(buffer, length), "pages the device holds atomically after mprotect(PROT_READ)");
            Expect(DeviceStatus.PermissionDenied, mirror.Write(buffer, MemoryMarshal.AsBytes<int>([-1])), "device write after mprotect(PROT_READ) (-EPERM)");
            Expect(0, space.Read<int>(buffer), "int[0] after the refused device write");
            long free = pool.FreePages;
            space.Unmap(buffer, length);
            Expect(free + SelftestPages, pool.FreePages, "free frames after unmapping the still-exclusive buffer");
        }

        AllFramesBack(pool);
    }

    private static void ExclusiveCow(ScenarioContext context)
    {
        using var pool = new PagePool((2 * SelftestPages) + 64, context.LoggerFactory);
        using (var space = new AddressSpace(pool, context.LoggerFactory))
        using (DeviceMirror mirror = context.Device().Mirror(space))
        {
            ulong buffer = MapIota(space, SelftestPages);
            ulong length = SelftestPages * Page;
            Expect(SelftestPages, mirror.MakeExclusive(buffer, length), "pages granted (cpages)");
            using AddressSpace child = space.Fork();
            Expect(0, mirror.CountExclusive(buffer, length), "pages the device holds after fork");
            for (int p = 0; p < SelftestPages; p++)
            {
                ulong at = buffer + ((ulong)p * Page);
                PageInfo parent = space.Inspect(at), inChild = child.Inspect(at);
                Check(parent.State != PageState.DeviceExclusive && inChild.State != PageState.DeviceExclusive, $"page {p} after fork: parent {parent}, child {inChild}");
                Check(!parent.Writable && parent.Frame == inChild.Frame && parent.MapCount == 2, $"page {p} is not shared copy-on-write after fork: parent {parent}, child {inChild}");
            }

            Invariants(pool, "after fork");
            IncrementEveryInt(space, buffer, SelftestPages, "parent");
            IncrementEveryInt(child, buffer, SelftestPages, "child");
            for (int p = 0; p < SelftestPages; p++)
            {
                ulong at = buffer + ((ulong)p * Page);
                Check(space.Inspect(at).Frame != child.Inspect(at).Frame, $"page {p}: parent and child still share a frame after both wrote");
                Check(child.Inspect(at).State != PageState.DeviceExclusive, $"page {p}: the child holds a device-exclusive entry");
            }
        }

        AllFramesBack(pool);
    }

    private static void PingPongCpuDevice(ScenarioContext context)
    {
        const int Rounds = 200;
        using var pool = new PagePool(64, context.LoggerFactory);
        using (var space = new AddressSpace(pool, context.LoggerFactory))
        using (DeviceMirror mirror = context.Device().Mirror(space))
        {
            ulong counter = space.Map(Page, Protection.ReadWrite);
            AtomicOp[] add = [new(counter, AtomicKind.Add, 1)];
            var old = new long[1];
            var roundTrips = new List<double>();
            for (int round = 0; round < Rounds; round++)
            {
                long started = Stopwatch.GetTimestamp();
                BatchResult result = mirror.Run(add, old);
                Expect(1L, result.Completed, $"round {round}: device ops completed");
                Check(result.DeviceFaults >= 1, $"round {round}: the device did not fault although the CPU had the page ({result})");
                Expect(2L * round, old[0], $"round {round}: the value the device's add replaced");
                Expect(PageState.DeviceExclusive, space.Inspect(counter).State, $"round {round}: CPU entry after the device's add");
                int value = space.AtomicAdd(counter, 1);
                roundTrips.Add(Microseconds(started));
                Expect((2 * round) + 2, value, $"round {round}: the CPU's add");
                Expect(PageState.Present, space.Inspect(counter).State, $"round {round}: CPU entry after the CPU's add");
            }

            context.Notes.Add($"{Rounds} round trips, median {Median(roundTrips):0.0} µs");
            Invariants(pool, "after the ping-pong");
        }

        AllFramesBack(pool);
    }

    private static void PingPongTwoDevices(ScenarioContext context)
    {
        const int Batches = 40, OpsPerBatch = 64;
        using var pool = new PagePool(64, context.LoggerFactory);
        using (var space = new AddressSpace(pool, context.LoggerFactory))
        using (DeviceMirror first = context.Device(0).Mirror(space))
        using (DeviceMirror second = context.Device(1).Mirror(space))
        {
            ulong counter = space.Map(Page, Protection.ReadWrite);
            var oldValues = new List<long>[2];
            long[] faults = new long[2];
            using var start = new Barrier(2);
            Task Side(DeviceMirror mirror, int side) => Start(() =>
            {
                var ops = Enumerable.Repeat(new AtomicOp(counter, AtomicKind.Add, 1), OpsPerBatch).ToArray();
                var old = new long[OpsPerBatch];
                oldValues[side] = [];
                start.SignalAndWait(Bound);
                for (int b = 0; b < Batches; b++)
                {
                    BatchResult result = mirror.Run(ops, old);
                    Expect((long)OpsPerBatch, result.Completed, $"device {side} batch {b}: ops completed");
                    faults[side] += result.DeviceFaults;
                    oldValues[side].AddRange(old);
                }
            });
            Task a = Side(first, 0), b = Side(second, 1);
            Join(a, "device 0");
            Join(b, "device 1");

            long total = 2L * Batches * OpsPerBatch;
            Expect((int)total, space.Read<int>(counter), "the shared counter after both devices");
            long[] all = [.. oldValues[0], .. oldValues[1]];
            Array.Sort(all);
            for (long i = 0; i < all.Length; i++)
                Check(all[i] == i, $"old values are not a permutation of 0..{total - 1}: position {i} holds {all[i]} (an add applied twice or lost)");
            Check(faults[0] >= 1 && faults[1] >= 1, $"each device should have faulted at least once (device faults {faults[0]} and {faults[1]})");
            context.Notes.Add($"{total} adds, device faults {faults[0]} + {faults[1]}");
            Invariants(pool, "after the ping-pong");
        }

        AllFramesBack(pool);
    }

    /// <summary>A device thread adding 1..16 to random counters on the first <paramref name="pages"/> pages until stopped; returns its adds per counter.</summary>
    private static Task<long[]> DeviceAdder(DeviceMirror mirror, ulong counters, int pages, Func<bool> stop, int seed) =>
        Task.Factory.StartNew(() =>
        {
            var added = new long[pages * 64];
            var random = new Random(seed);
            var ops = new AtomicOp[64];
            var index = new int[64];
            while (!stop())
            {
                for (int i = 0; i < ops.Length; i++)
                {
                    index[i] = random.Next(added.Length);
                    ops[i] = new AtomicOp(counters + ((ulong)(index[i] / 64) * Page) + ((ulong)(index[i] % 64) * sizeof(int)), AtomicKind.Add, 1 + random.Next(16));
                }

                BatchResult result = mirror.Run(ops);
                Expect((long)ops.Length, result.Completed, $"a device batch on mapped writable pages ({result}): ops completed");
                for (int i = 0; i < ops.Length; i++)
                    added[index[i]] += ops[i].Operand;
            }

            return added;
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static void CheckTotals(AddressSpace space, ulong counters, long[] added, string when)
    {
        for (int i = 0; i < added.Length; i++)
        {
            int value = space.Read<int>(counters + ((ulong)(i / 64) * Page) + ((ulong)(i % 64) * sizeof(int)));
            Check(value == added[i], $"{when}: counter {i} reads {value}, its adds sum to {added[i]} (lost or duplicated update)");
        }
    }

    private static void ForkStorm(ScenarioContext context)
    {
        const int Forks = 100, Pages = 4;
        using var pool = new PagePool(256, context.LoggerFactory);
        using (var space = new AddressSpace(pool, context.LoggerFactory))
        using (DeviceMirror mirror = context.Device().Mirror(space))
        {
            ulong counters = space.Map(Pages * Page, Protection.ReadWrite);
            ulong marker = space.Map(Page, Protection.ReadWrite);
            bool stop = false;
            Task<long[]> device = DeviceAdder(mirror, counters, Pages, () => Volatile.Read(ref stop), 1);
            var before = new int[Pages * 64];
            var inChild = new int[Pages * 64];
            try
            {
                for (int f = 0; f < Forks; f++)
                {
                    space.Write(marker, f);
                    space.Read(counters, MemoryMarshal.AsBytes(before.AsSpan()));
                    using AddressSpace child = space.Fork();
                    for (int p = 0; p < Pages; p++)
                    {
                        PageInfo info = child.Inspect(counters + ((ulong)p * Page));
                        Check(info.State != PageState.DeviceExclusive, $"fork {f}: the child holds a device-exclusive entry on page {p}: {info}");
                    }

                    child.Read(counters, MemoryMarshal.AsBytes(inChild.AsSpan()));
                    for (int i = 0; i < inChild.Length; i++)
                        Check(inChild[i] >= before[i], $"fork {f}: the child's counter {i} reads {inChild[i]}, below the parent's {before[i]} before the fork");
                    Expect(f, child.Read<int>(marker), $"fork {f}: the child's marker");
                    child.Write(marker, -f);
                    Expect(f, space.Read<int>(marker), $"fork {f}: the parent's marker after the child wrote its own");
                    ThrowIfEnded(device, $"fork {f}");
                }
            }
            finally
            {
                Volatile.Write(ref stop, true);
            }

            Join(device, "the device thread");
            CheckTotals(space, counters, device.Result, "after the fork storm");
            context.Notes.Add($"{Forks} forks; the device added {device.Result.Sum()} meanwhile");
            Invariants(pool, "after the fork storm");
        }

        AllFramesBack(pool);
    }

    private static void MprotectStorm(ScenarioContext context)
    {
        const int Toggles = 100;
        using var pool = new PagePool(64, context.LoggerFactory);
        using (var space = new AddressSpace(pool, context.LoggerFactory))
        using (DeviceMirror mirror = context.Device().Mirror(space))
        {
            ulong counter = space.Map(Page, Protection.ReadWrite);
            bool stop = false;
            long deviceApplied = 0, deviceRefused = 0, cpuApplied = 0;
            Task device = Start(() =>
            {
                var ops = Enumerable.Repeat(new AtomicOp(counter, AtomicKind.Add, 1), 32).ToArray();
                while (!Volatile.Read(ref stop))
                {
                    BatchResult result = mirror.Run(ops);
                    Expect(0L, result.NotMapped, $"device ops on a mapped page refused as NotMapped ({result})");
                    Expect((long)ops.Length, result.Completed + result.PermissionDenied, $"device ops accounted for ({result})");
                    deviceApplied += result.Completed;
                    deviceRefused += result.PermissionDenied;
                }
            });
            Task cpu = Start(() =>
            {
                while (!Volatile.Read(ref stop))
                {
                    try
                    {
                        space.AtomicAdd(counter + 64, 1);
                        cpuApplied++;
                    }
                    catch (MemoryAccessException e) when (e.IsWrite)
                    {
                    }
                }
            });
            try
            {
                for (int t = 0; t < Toggles; t++)
                {
                    space.Protect(counter, Page, Protection.Read);
                    Expect(0, mirror.CountExclusive(counter, Page), $"toggle {t}: pages the device holds atomically in a read-only mapping");
                    Thread.Sleep(t % 10 == 0 ? 1 : 0);
                    space.Protect(counter, Page, Protection.ReadWrite);
                    Thread.Sleep(t % 10 == 5 ? 1 : 0);
                }
            }
            finally
            {
                Volatile.Write(ref stop, true);
            }

            Join(device, "the device thread");
            Join(cpu, "the CPU thread");
            Expect((int)deviceApplied, space.Read<int>(counter), "the device's counter (sum of completed ops)");
            Expect((int)cpuApplied, space.Read<int>(counter + 64), "the CPU's counter (sum of successful adds)");
            context.Notes.Add($"device ops applied {deviceApplied}, refused while read-only {deviceRefused}; CPU adds {cpuApplied}");
            Invariants(pool, "after the mprotect storm");
        }

        AllFramesBack(pool);
    }

    private static void DiscardUnderLoad(ScenarioContext context)
    {
        const int Rounds = 200, Pages = 4, Victims = 4;
        using var pool = new PagePool(48, context.LoggerFactory); // counters, victims, and little else: pressure
        using (var space = new AddressSpace(pool, context.LoggerFactory))
        using (DeviceMirror mirror = context.Device().Mirror(space))
        {
            ulong counters = space.Map(Pages * Page, Protection.ReadWrite);
            ulong victims = space.Map(Victims * Page, Protection.ReadWrite);
            bool stop = false;
            Task<long[]> device = DeviceAdder(mirror, counters, Pages, () => Volatile.Read(ref stop), 2);
            Span<byte> probe = stackalloc byte[sizeof(long)];
            try
            {
                for (int round = 0; round < Rounds; round++)
                {
                    for (int v = 0; v < Victims; v++)
                        space.Write(victims + ((ulong)v * Page) + Page - sizeof(long), (long)round + 1);
                    Expect(Victims, mirror.MakeExclusive(victims, Victims * Page), $"round {round}: victim pages granted");
                    space.Discard(victims, Victims * Page);
                    Expect(0, mirror.CountExclusive(victims, Victims * Page), $"round {round}: victim pages the device holds after Discard");
                    for (int v = 0; v < Victims; v++)
                    {
                        ulong at = victims + ((ulong)v * Page) + Page - sizeof(long);
                        Expect(DeviceStatus.Ok, mirror.Read(at, probe), $"round {round}: device read of discarded page {v}");
                        Expect(0L, BitConverter.ToInt64(probe), $"round {round}: the device reads discarded page {v}");
                        Expect(0L, space.Read<long>(at), $"round {round}: the CPU reads discarded page {v}");
                    }

                    ThrowIfEnded(device, $"round {round}");
                }
            }
            finally
            {
                Volatile.Write(ref stop, true);
            }

            Join(device, "the device thread");
            CheckTotals(space, counters, device.Result, "after the discards");
            context.Notes.Add($"{Rounds} grant/discard rounds; the device added {device.Result.Sum()} meanwhile");
            Invariants(pool, "after the discards");
        }

        AllFramesBack(pool);
    }
}
