using System.Runtime.CompilerServices;
using GpuExclusive.Diagnostics;

namespace GpuExclusive.Tests.Hostile;

/// <summary>
/// One hostile call on a fresh <see cref="HostileWorld"/> and its documented answer: the exception family it must throw
/// (null: it must answer without throwing, and <see cref="Check"/> looks at the answer) and the words its message must
/// contain (a parameter name, an address in hex, the rule broken).
/// </summary>
/// <param name="Member">The public member, as <see cref="HostileCases.KeyOf(System.Reflection.MemberInfo)"/> names it.</param>
internal sealed record HostileCase(
    string Member,
    string Name,
    Action<HostileWorld> Call,
    Type? Throws,
    Func<HostileWorld, string[]> MustName,
    Action<HostileWorld, Exception?>? Check = null)
{
    public string Id => $"{Member}: {Name}";
}

/// <summary>
/// The table of the hostile-input sweep (issue 6, item 3): for every public member of the engine's types, the
/// arguments that must be refused — zero, misaligned, wrapping, huge, at and past the top of the 47-bit space, past
/// 2^48 (where a radix-tree walk would alias low addresses), over a hole, after Unmap, on disposed objects — and
/// the calls that look hostile but are defined (Unmap of a hole, a device read of nothing).
/// </summary>
internal static class HostileCases
{
    private const ulong Page = PagePool.PageSize;

    /// <summary>The last page-aligned address of the 64-bit range.</summary>
    private const ulong Top = 0xFFFF_FFFF_FFFF_F000;

    /// <summary>The first address past the 47-bit user space.</summary>
    private const ulong PastSpace = 0x8000_0000_0000;

    /// <summary>The last page of the 47-bit space: valid, never mapped here.</summary>
    private const ulong LastPage = 0x7FFF_FFFF_F000;

    /// <summary>Added to a mapped address, lands where a 4-level walk that ignores the high bits finds the same leaf.</summary>
    private const ulong AliasOffset = 1UL << 48;

    public static IReadOnlyList<HostileCase> All { get; } = Build();

    /// <summary>Members with nothing hostile to feed them, and why (the coverage guard accepts these without cases).</summary>
    public static IReadOnlyDictionary<string, string> Exempt { get; } = new Dictionary<string, string>
    {
        ["PagePool.Capacity"] = "a field read; takes nothing and is defined after Dispose too",
        ["PagePool.FreePages"] = "a counter read; takes nothing and is defined after Dispose too",
        ["PagePool.IsPinned"] = "a field read; takes nothing and is defined after Dispose too",
        ["AddressSpace.Pool"] = "a field read; takes nothing and is defined after Dispose too",
        ["AddressSpace.Dispose()"] = "takes nothing and is idempotent (DisposalTests.Dispose_Twice_IsHarmless); what it frees is DisposalTests' subject",
        ["DeviceMirror.Device"] = "a field read; takes nothing and is defined after Dispose too",
        ["DeviceMirror.Dispose()"] = "takes nothing and is idempotent (HostileDeviceInputTests.EveryMirrorMethod_AfterTheMirrorIsDisposed_ThrowsObjectDisposed)",
        ["ExclusiveDevice.Kind"] = "a field read; takes nothing and is defined after Dispose too",
        ["ExclusiveDevice.Name"] = "a field read; takes nothing and is defined after Dispose too",
        ["ExclusiveDevice.GridThreads"] = "a field read; takes nothing and is defined after Dispose too",
        ["ExclusiveDevice.DefaultPlacement"] = "a field read; takes nothing and is defined after Dispose too",
        ["DeviceMirror.Placement"] = "a field read; takes nothing and is defined after Dispose too",
        ["ExclusiveDevice.Dispose()"] = "takes nothing and is idempotent; the fixture disposes a device twice (HostileSweepFixture)",
        ["new NotifierRange(Start, End, Event, Owner)"] = "a plain value the engine hands to notifiers; it is never taken from users as a command",
        ["NotifierRange.Overlaps(start, end)"] = "a pure comparison, defined for every pair of addresses; no state to corrupt",
        ["new AtomicOp(Address, Kind, Operand, Comparand, Is64Bit)"] = "a plain value; DeviceMirror.Run validates it (its cases below)",
        ["PreparedBatch.Count"] = "a field read; takes nothing and is defined after Dispose too",
        ["PreparedBatch.Mirror"] = "a field read; takes nothing and is defined after Dispose too",
        ["PreparedBatch.Dispose()"] = "takes nothing and is idempotent; that it waits for a run in progress is DeviceExclusiveContract's (PreparedBatch_Dispose_WaitsForTheRunInProgress)",
        ["new MemoryAccessException(address, isWrite, reason)"] = "describes a failed access; every address is describable",
    };

    /// <summary>The key of a member in the table: <c>Type.Method(parameter names)</c>, <c>new Type(…)</c>, or <c>Type.Property</c>.</summary>
    public static string KeyOf(System.Reflection.MemberInfo member) => member switch
    {
        System.Reflection.ConstructorInfo c => $"new {c.DeclaringType!.Name}({Parameters(c)})",
        System.Reflection.MethodInfo m => $"{m.DeclaringType!.Name}.{m.Name}{(m.IsGenericMethodDefinition ? "<T>" : string.Empty)}({Parameters(m)})",
        System.Reflection.PropertyInfo p => $"{p.DeclaringType!.Name}.{p.Name}",
        _ => throw new ArgumentOutOfRangeException(nameof(member), member, null),
    };

    private static string Parameters(System.Reflection.MethodBase method) => string.Join(", ", method.GetParameters().Select(p => p.Name));

    private static string Hex(ulong address) => $"0x{address:x}";

    /// <summary>How an <see cref="ArgumentException"/> message names its parameter (the bare word would also match "virtual address space").</summary>
    private static string P(string parameter) => $"(Parameter '{parameter}')";

    private static List<HostileCase> Build()
    {
        var table = new Table();
        AddPagePool(table);
        AddAddressSpaceRanges(table);
        AddAddressSpaceAccess(table);
        AddAddressSpaceRest(table);
        AddMirror(table);
        AddDevice(table);
        return table.Cases;
    }

    private static void AddPagePool(Table t)
    {
        const string New = "new PagePool(capacityPages, loggerFactory, lockMemory)";
        foreach (var capacity in new[] { 0L, -1L, long.MinValue, int.MaxValue + 1L, long.MaxValue })
        {
            t.Throws<ArgumentOutOfRangeException>(New, $"capacity {capacity}", _ => new PagePool(capacity).Dispose(), P("capacityPages"), capacity.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        t.Throws<InvalidOperationException>("PagePool.Dispose()", "while address spaces still use it", w => w.Pool.Dispose(), "still used by", "address space");

        const string Check = "InvariantChecker.Check(pool)";
        t.Throws<ArgumentNullException>(Check, "null pool", _ => InvariantChecker.Check(null!), P("pool"));
        t.Throws<ArgumentNullException>("InvariantChecker.Collect(pool)", "null pool", _ => InvariantChecker.Collect(null!), P("pool"));
    }

    /// <summary>The calls that take a page range, each with the same bad ranges, plus what is particular to each.</summary>
    private static void AddAddressSpaceRanges(Table t)
    {
        var operations = new (string Member, Action<AddressSpace, ulong, ulong> Call)[]
        {
            ("AddressSpace.Unmap(address, length)", (s, a, l) => s.Unmap(a, l)),
            ("AddressSpace.Protect(address, length, protection)", (s, a, l) => s.Protect(a, l, Protection.Read)),
            ("AddressSpace.Lock(address, length)", (s, a, l) => s.Lock(a, l)),
            ("AddressSpace.Unlock(address, length)", (s, a, l) => s.Unlock(a, l)),
            ("AddressSpace.Discard(address, length)", (s, a, l) => s.Discard(a, l)),
            ("AddressSpace.InsertIntervalNotifier(notifier, address, length)", (s, a, l) => s.InsertIntervalNotifier(new HostileWorld.RecordingInterval(), a, l)),
        };

        foreach (var (member, call) in operations)
        {
            BadRanges(t, member, (w, a, l) => call(w.Space, a, l));
            t.Throws<ObjectDisposedException>(member, "on a disposed space", w => call(w.DisposedSpace, w.DisposedSpaceAddress, Page), "AddressSpace");
            if (member.Contains("Unmap", StringComparison.Ordinal) || member.Contains("Interval", StringComparison.Ordinal))
            {
                continue; // these two accept unmapped ranges (munmap skips holes; a notifier may watch any interval)
            }

            t.Throws<ArgumentException>(member, "the hole (used after Unmap)", w => call(w.Space, w.Hole, Page), w => [P("address"), "not fully mapped", Hex(w.Hole)]);
            t.Throws<ArgumentException>(member, "a range over the hole", w => call(w.Space, w.GapLow, 3 * Page), w => [P("address"), "not fully mapped", Hex(w.Hole)]);
            t.Throws<ArgumentException>(member, "a mapping and the unmapped page after it", w => call(w.Space, w.Rw, 5 * Page), w => [P("address"), "not fully mapped", Hex(w.Rw + (4 * Page))]);
            t.Throws<ArgumentException>(member, "the last page of the space, never mapped", w => call(w.Space, LastPage, Page), [P("address"), "not fully mapped", Hex(LastPage)]);
        }

        const string Unmap = "AddressSpace.Unmap(address, length)";
        t.Answers(Unmap, "the hole (used after Unmap) is skipped, as munmap does", w => w.Space.Unmap(w.Hole, Page));
        t.Answers(Unmap, "the last page of the space, never mapped", w => w.Space.Unmap(LastPage, Page));

        const string Protect = "AddressSpace.Protect(address, length, protection)";
        t.Throws<ArgumentException>(Protect, "protection 4", w => w.Space.Protect(w.Rw, Page, (Protection)4), P("protection"), "4");
        t.Throws<ArgumentException>(Protect, "protection -1", w => w.Space.Protect(w.Big, Page, (Protection)(-1)), P("protection"), "-1");

        t.Throws<InsufficientMemoryException>("AddressSpace.Lock(address, length)", "more pages than the pool has free", w => w.Space.Lock(w.Big, HostileWorld.BigPages * Page), w => [Hex(w.Big), "needs up to 128 free frames"]);

        t.Throws<InvalidOperationException>("AddressSpace.Discard(address, length)", "an mlocked area", w => w.Space.Discard(w.Locked, 2 * Page), w => ["mlocked", Hex(w.Locked)]);
        t.Throws<InvalidOperationException>("AddressSpace.Discard(address, length)", "half of an mlocked area", w => w.Space.Discard(w.Locked + Page, Page), w => ["mlocked", Hex(w.Locked + Page)]);

        const string Insert = "AddressSpace.InsertIntervalNotifier(notifier, address, length)";
        t.Throws<ArgumentNullException>(Insert, "null notifier", w => w.Space.InsertIntervalNotifier(null!, w.Rw, Page), P("notifier"));
        t.Throws<InvalidOperationException>(Insert, "a notifier already inserted here, at another range", w => w.Space.InsertIntervalNotifier(w.Interval, w.GapLow, Page), "already inserted");
        t.Throws<InvalidOperationException>(Insert, "a notifier already inserted in another space", w => w.Child.InsertIntervalNotifier(w.Interval, w.Rw, Page), "already inserted");
    }

    /// <summary>Bad ranges every range-taking call refuses with an <see cref="ArgumentException"/>.</summary>
    private static void BadRanges(Table t, string member, Action<HostileWorld, ulong, ulong> call)
    {
        t.Throws<ArgumentException>(member, "zero length", w => call(w, w.Rw, 0), P("length"), "zero");
        t.Throws<ArgumentException>(member, "length 1", w => call(w, w.Rw, 1), P("length"), "0x1 ");
        t.Throws<ArgumentException>(member, "length not whole pages", w => call(w, w.Rw, Page + 512), P("length"), "0x1200");
        t.Throws<ArgumentException>(member, "misaligned address", w => call(w, w.Rw + 8, Page), w => [P("address"), Hex(w.Rw + 8), "not page-aligned"]);
        t.Throws<ArgumentException>(member, "address one byte before a page", w => call(w, w.Rw + Page - 1, Page), w => [P("address"), Hex(w.Rw + Page - 1)]);
        t.Throws<ArgumentException>(member, "huge length from a mapped address (wraps)", w => call(w, w.Rw, Top), [P("length"), Hex(Top)]);
        t.Throws<ArgumentException>(member, "range wrapping past 2^64", w => call(w, Top, 2 * Page), [P("address"), Hex(Top), "47-bit"]);
        t.Throws<ArgumentException>(member, "address past the 47-bit space", w => call(w, PastSpace, Page), [P("address"), Hex(PastSpace), "47-bit"]);
        t.Throws<ArgumentException>(member, "the top page of the 64-bit range", w => call(w, Top, Page), [P("address"), Hex(Top), "47-bit"]);
        t.Throws<ArgumentException>(member, "range running past the 47-bit space", w => call(w, LastPage, 2 * Page), [P("length"), Hex(LastPage), "47-bit"]);
        t.Throws<ArgumentException>(member, "a mapped address plus 2^48", w => call(w, w.Rw + AliasOffset, Page), w => [P("address"), Hex(w.Rw + AliasOffset), "47-bit"]);
    }

    private static void AddAddressSpaceAccess(Table t)
    {
        // The reads and writes of one value, an int (Read<T>/Write<T>), and of a span.
        const string ReadT = "AddressSpace.Read<T>(address)";
        const string WriteT = "AddressSpace.Write<T>(address, value)";
        const string Atomic = "AddressSpace.AtomicAdd(address, value)";
        const string ReadSpan = "AddressSpace.Read(address, destination)";
        const string WriteSpan = "AddressSpace.Write(address, source)";
        var accesses = new (string Member, bool IsWrite, Action<AddressSpace, ulong> Call)[]
        {
            (ReadT, false, (s, a) => s.Read<int>(a)),
            (WriteT, true, (s, a) => s.Write(a, -1)),
            (Atomic, true, (s, a) => s.AtomicAdd(a, 1)),
            (ReadSpan, false, (s, a) => s.Read(a, new byte[16])),
            (WriteSpan, true, (s, a) => s.Write(a, new byte[16])),
        };

        foreach (var (member, isWrite, call) in accesses)
        {
            Faults(t, member, "the hole (used after Unmap)", isWrite, w => w.Hole, (w, a) => call(w.Space, a));
            Faults(t, member, "a Protection.None area", isWrite, w => w.NoAccess, (w, a) => call(w.Space, a));
            Faults(t, member, "address 0", isWrite, _ => 0, (w, a) => call(w.Space, a));
            Faults(t, member, "the page below the first mapping", isWrite, w => w.Rw - Page, (w, a) => call(w.Space, a));
            Faults(t, member, "the last page of the space", isWrite, _ => LastPage, (w, a) => call(w.Space, a));
            Faults(t, member, "address past the 47-bit space", isWrite, _ => PastSpace, (w, a) => call(w.Space, a));
            Faults(t, member, "the top page of the 64-bit range", isWrite, _ => Top, (w, a) => call(w.Space, a));
            Faults(t, member, "a writable page's address plus 2^48", isWrite, w => w.Rw + AliasOffset, (w, a) => call(w.Space, a));
            Faults(t, member, "a shared page's address plus 2^48", isWrite, w => w.Shared + AliasOffset, (w, a) => call(w.Space, a));
            Faults(t, member, "a writable page's address plus 2^63", isWrite, w => w.Rw + (1UL << 63), (w, a) => call(w.Space, a));
            if (isWrite)
            {
                Faults(t, member, "a read-only area", true, w => w.Ro, (w, a) => call(w.Space, a));
                Faults(t, member, "a read-only area of the child", true, w => w.Ro, (w, a) => call(w.Child, a));
            }

            t.Throws<ObjectDisposedException>(member, "on a disposed space", w => call(w.DisposedSpace, w.DisposedSpaceAddress), "AddressSpace");
        }

        // Values that cross a page boundary (docs/architecture.md, "the public surface and errors": ArgumentException).
        t.Throws<ArgumentException>(ReadT, "an int crossing a page", w => w.Space.Read<int>(w.Rw + Page - 2), w => [P("address"), Hex(w.Rw + Page - 2), "cross a page"]);
        t.Throws<ArgumentException>(ReadT, "a Guid at the last 8 bytes of a page", w => w.Space.Read<Guid>(w.Rw + Page - 8), w => [P("address"), Hex(w.Rw + Page - 8)]);
        t.Throws<ArgumentException>(ReadT, "a value larger than a page", w => w.Space.Read<TwoPages>(w.Rw), w => [P("address"), "8192-byte", Hex(w.Rw)]);
        t.Throws<ArgumentException>(ReadT, "an int crossing the hole's edge", w => w.Space.Read<int>(w.Hole - 2), w => [P("address"), Hex(w.Hole - 2)]);
        t.Throws<ArgumentException>(ReadT, "an int crossing the end of the 64-bit range", w => w.Space.Read<int>(ulong.MaxValue - 1), [P("address"), "0xfffffffffffffffe"]);
        t.Throws<ArgumentException>(WriteT, "an int crossing a page", w => w.Space.Write(w.Rw + Page - 1, -1), w => [P("address"), Hex(w.Rw + Page - 1), "cross a page"]);
        t.Throws<ArgumentException>(WriteT, "a long crossing into a read-only page", w => w.Space.Write(w.Ro - 4, -1L), w => [P("address"), Hex(w.Ro - 4)]);
        t.Throws<ArgumentException>(WriteT, "a value larger than a page", w => w.Space.Write(w.Rw, default(TwoPages)), w => [P("address"), "8192-byte", Hex(w.Rw)]);
        Faults(t, ReadT, "the last int of the 64-bit range", false, _ => ulong.MaxValue - 3, (w, a) => w.Space.Read<int>(a));

        foreach (var offset in new ulong[] { 1, 2, 3, Page - 2 })
        {
            t.Throws<ArgumentException>(Atomic, $"address misaligned by {offset % 4}, offset {offset}", w => w.Space.AtomicAdd(w.Rw + offset, 1), w => [P("address"), Hex(w.Rw + offset), "4-byte-aligned"]);
        }

        t.Throws<ArgumentException>(Atomic, "misaligned and read-only: the alignment is refused first", w => w.Space.AtomicAdd(w.Ro + 1, 1), w => [P("address"), "4-byte-aligned", Hex(w.Ro + 1)]);

        // Spans: wrapping past 2^64, and spans that run from an accessible page into one that is not.
        t.Throws<ArgumentException>(ReadSpan, "16 bytes 5 before the end of the 64-bit range", w => w.Space.Read(ulong.MaxValue - 4, new byte[16]), [P("address"), "0xfffffffffffffffb", "run past the end"]);
        t.Throws<ArgumentException>(WriteSpan, "16 bytes 5 before the end of the 64-bit range", w => w.Space.Write(ulong.MaxValue - 4, new byte[16]), [P("address"), "0xfffffffffffffffb", "run past the end"]);
        Faults(t, ReadSpan, "from a present page into the hole", false, w => w.Hole, (w, _) => w.Space.Read(w.GapLow + Page - 8, new byte[16]));
        Faults(t, ReadSpan, "the whole gap mapping, hole included", false, w => w.Hole, (w, _) => w.Space.Read(w.GapLow, new byte[3 * Page]));
        Faults(t, WriteSpan, "from a present page into the hole: nothing written", true, w => w.Hole, (w, _) => w.Space.Write(w.GapLow + Page - 8, new byte[16]));
        Faults(t, WriteSpan, "from a writable page into a read-only one: nothing written", true, w => w.Ro, (w, _) => w.Space.Write(w.RoHead + Page - 8, new byte[16]));
        Faults(t, WriteSpan, "off the end of a mapping: nothing written", true, w => w.Rw + (4 * Page), (w, _) => w.Space.Write(w.Rw + (3 * Page), new byte[Page + 1]));
        t.Answers(ReadSpan, "an empty span past the space reads nothing", w => w.Space.Read(PastSpace, Span<byte>.Empty));
        t.Answers(WriteSpan, "an empty span past the space writes nothing", w => w.Space.Write(PastSpace, ReadOnlySpan<byte>.Empty));
    }

    /// <summary>A <see cref="MemoryAccessException"/> at exactly <paramref name="address"/>, with the right kind, and nothing changed.</summary>
    private static void Faults(Table t, string member, string name, bool isWrite, Func<HostileWorld, ulong> address, Action<HostileWorld, ulong> call) =>
        t.Add(new HostileCase(member, name, w => call(w, address(w)), typeof(MemoryAccessException), w => [Hex(address(w)), isWrite ? "write" : "read"], (w, e) =>
        {
            var error = (MemoryAccessException)e!;
            Assert.Equal(Hex(address(w)), Hex(error.Address));
            Assert.Equal(isWrite, error.IsWrite);
        }));

    private static void AddAddressSpaceRest(Table t)
    {
        const string Map = "AddressSpace.Map(length, protection, sharing)";
        t.Throws<ArgumentException>(Map, "zero length", w => w.Space.Map(0, Protection.ReadWrite), P("length"), "zero");
        t.Throws<ArgumentException>(Map, "length 1", w => w.Space.Map(1, Protection.ReadWrite), P("length"), "0x1 ");
        t.Throws<ArgumentException>(Map, "length not whole pages", w => w.Space.Map(Page + 1, Protection.ReadWrite), P("length"), "0x1001");
        t.Throws<ArgumentException>(Map, "length one page more than the space", w => w.Space.Map(HostileWorld.SpaceEnd + Page, Protection.ReadWrite), P("length"), "0x800000001000");
        t.Throws<ArgumentException>(Map, "length of the whole 64-bit range", w => w.Space.Map(Top, Protection.ReadWrite), P("length"), Hex(Top));
        t.Throws<InsufficientMemoryException>(Map, "the whole 47-bit space, some of it in use", w => w.Space.Map(HostileWorld.SpaceEnd, Protection.ReadWrite), "0x800000000000", "no free virtual range");
        t.Throws<ArgumentException>(Map, "protection 4", w => w.Space.Map(Page, (Protection)4), P("protection"), "4");
        t.Throws<ArgumentException>(Map, "protection -1", w => w.Space.Map(Page, (Protection)(-1)), P("protection"), "-1");
        t.Throws<ArgumentException>(Map, "sharing 2", w => w.Space.Map(Page, Protection.ReadWrite, (Sharing)2), P("sharing"), "2");
        t.Throws<ArgumentException>(Map, "sharing -1", w => w.Space.Map(Page, Protection.ReadWrite, (Sharing)(-1)), P("sharing"), "-1");
        t.Throws<ObjectDisposedException>(Map, "on a disposed space", w => w.DisposedSpace.Map(Page, Protection.ReadWrite), "AddressSpace");

        t.Throws<ObjectDisposedException>("AddressSpace.Fork()", "on a disposed space", w => w.DisposedSpace.Fork().Dispose(), "AddressSpace");
        t.Throws<ObjectDisposedException>("AddressSpace.ClearSoftDirty()", "on a disposed space", w => w.DisposedSpace.ClearSoftDirty(), "AddressSpace");

        const string Inspect = "AddressSpace.Inspect(address)";
        t.Throws<ObjectDisposedException>(Inspect, "on a disposed space", w => w.DisposedSpace.Inspect(w.DisposedSpaceAddress), "AddressSpace");
        foreach (var (name, address) in new (string, Func<HostileWorld, ulong>)[]
        {
            ("the hole", w => w.Hole), ("address past the 47-bit space", _ => PastSpace), ("the top page of the 64-bit range", _ => Top),
            ("the last byte of the 64-bit range", _ => ulong.MaxValue), ("a writable page's address plus 2^48", w => w.Rw + AliasOffset),
        })
        {
            t.Answers(Inspect, $"{name} is Unmapped", w => Assert.Equal(PageState.Unmapped, w.Space.Inspect(address(w)).State));
        }

        const string Register = "AddressSpace.RegisterNotifier(notifier)";
        t.Throws<ArgumentNullException>(Register, "null notifier", w => w.Space.RegisterNotifier(null!), P("notifier"));
        t.Throws<InvalidOperationException>(Register, "a notifier already registered", w => w.Space.RegisterNotifier(w.Notifier), "already registered");
        t.Throws<ObjectDisposedException>(Register, "on a disposed space", w => w.DisposedSpace.RegisterNotifier(new HostileWorld.NullNotifier()), "AddressSpace");

        const string New = "new AddressSpace(pool, loggerFactory)";
        t.Throws<ArgumentNullException>(New, "null pool", _ => new AddressSpace(null!).Dispose(), P("pool"));
        t.Throws<ObjectDisposedException>(New, "a disposed pool", w => new AddressSpace(w.DisposedPool).Dispose(), "PagePool");
    }

    private static void AddMirror(Table t)
    {
        const string Make = "DeviceMirror.MakeExclusive(address, length)";
        const string Count = "DeviceMirror.CountExclusive(address, length)";
        BadRanges(t, Make, (w, a, l) => w.Mirror.MakeExclusive(a, l));
        BadRanges(t, Count, (w, a, l) => w.Mirror.CountExclusive(a, l));
        foreach (var member in new[] { Make, Count })
        {
            Action<DeviceMirror, ulong> call = member == Make ? (m, a) => m.MakeExclusive(a, Page) : (m, a) => m.CountExclusive(a, Page);
            t.Throws<ObjectDisposedException>(member, "on a disposed mirror", w => call(w.DisposedMirror, w.DisposedMirrorAddress), "DeviceMirror");
            t.Throws<ObjectDisposedException>(member, "on a mirror whose space was disposed", w => call(w.OrphanMirror, w.OrphanMirrorAddress), "AddressSpace");
        }

        Faults(t, Make, "the hole (used after Unmap)", true, w => w.Hole, (w, a) => w.Mirror.MakeExclusive(a, Page));
        Faults(t, Make, "a range over the hole: nothing granted", true, w => w.Hole, (w, _) => w.Mirror.MakeExclusive(w.GapLow, 3 * Page));
        Faults(t, Make, "a mapping and the unmapped page after it: nothing granted", true, w => w.Rw + (4 * Page), (w, _) => w.Mirror.MakeExclusive(w.Rw, 5 * Page));
        Faults(t, Make, "exclusive pages and the unmapped page after them", true, w => w.Excl + (2 * Page), (w, _) => w.Mirror.MakeExclusive(w.Excl, 3 * Page));
        Faults(t, Make, "a read-only area", true, w => w.Ro, (w, a) => w.Mirror.MakeExclusive(a, 2 * Page));
        Faults(t, Make, "a writable page and read-only ones: nothing granted", true, w => w.Ro, (w, _) => w.Mirror.MakeExclusive(w.RoHead, 3 * Page));
        Faults(t, Make, "a Protection.None area", true, w => w.NoAccess, (w, a) => w.Mirror.MakeExclusive(a, Page));
        Faults(t, Make, "the last page of the space", true, _ => LastPage, (w, a) => w.Mirror.MakeExclusive(a, Page));
        t.Throws<NotSupportedException>(Make, "a shared area", w => w.Mirror.MakeExclusive(w.Shared, 2 * Page), w => [Hex(w.Shared), "shared"]);
        t.Throws<InsufficientMemoryException>(Make, "more pages than the pool has free", w => w.Mirror.MakeExclusive(w.Big, HostileWorld.BigPages * Page), w => [Hex(w.Big), "needs up to 128 free frames"]);
        t.Answers(Count, "the hole counts nothing", w => Assert.Equal(0, w.Mirror.CountExclusive(w.Hole, Page)));
        t.Answers(Count, "the whole 47-bit space counts the two granted pages", w => Assert.Equal(2, w.Mirror.CountExclusive(0, HostileWorld.SpaceEnd)));

        const string Read = "DeviceMirror.Read(address, destination)";
        const string Write = "DeviceMirror.Write(address, source)";
        foreach (var (member, isWrite) in new[] { (Read, false), (Write, true) })
        {
            DeviceStatus Access(DeviceMirror mirror, ulong address, int length) =>
                isWrite ? mirror.Write(address, new byte[length]) : mirror.Read(address, new byte[length]);

            t.Throws<ArgumentException>(member, "16 bytes 5 before the end of the 64-bit range", w => Access(w.Mirror, ulong.MaxValue - 4, 16), [P("address"), "0xfffffffffffffffb", "run past the end"]);
            t.Throws<ObjectDisposedException>(member, "on a disposed mirror", w => Access(w.DisposedMirror, w.DisposedMirrorAddress, 4), "DeviceMirror");
            t.Throws<ObjectDisposedException>(member, "on a mirror whose space was disposed", w => Access(w.OrphanMirror, w.OrphanMirrorAddress, 4), "AddressSpace");
            foreach (var (name, address) in new (string, Func<HostileWorld, ulong>)[]
            {
                ("the hole (used after Unmap)", w => w.Hole), ("address 0", _ => 0), ("the last page of the space", _ => LastPage),
            })
            {
                t.Answers(member, $"{name} is NotMapped", w => Assert.Equal(DeviceStatus.NotMapped, Access(w.Mirror, address(w), 16)));
            }

            // Past the 47-bit space the device calls agree with MakeExclusive, CountExclusive and Run: a bad argument.
            foreach (var (name, address) in new (string, Func<HostileWorld, ulong>)[]
            {
                ("address past the 47-bit space", _ => PastSpace), ("the top page of the 64-bit range", _ => Top),
                ("a writable page's address plus 2^48", w => w.Rw + AliasOffset), ("a device-exclusive page's address plus 2^48", w => w.Excl + AliasOffset),
            })
            {
                t.Throws<ArgumentException>(member, name, w => Access(w.Mirror, address(w), 16), w => [P("address"), Hex(address(w)), "47-bit"]);
            }

            t.Answers(member, "a Protection.None area is PermissionDenied", w => Assert.Equal(DeviceStatus.PermissionDenied, Access(w.Mirror, w.NoAccess, 16)));
            t.Answers(member, "from a present page into the hole is NotMapped, nothing changed", w => Assert.Equal(DeviceStatus.NotMapped, Access(w.Mirror, w.GapLow + Page - 8, 16)));
        }

        t.Answers(Write, "a read-only area is PermissionDenied, nothing written", w => Assert.Equal(DeviceStatus.PermissionDenied, w.Mirror.Write(w.Ro, new byte[16])));
        t.Answers(Write, "from a writable page into a read-only one is PermissionDenied, nothing written", w => Assert.Equal(DeviceStatus.PermissionDenied, w.Mirror.Write(w.RoHead + Page - 8, new byte[16])));

        const string Run = "DeviceMirror.Run(ops, oldValues)";
        t.Throws<ArgumentException>(Run, "oldValues shorter than the batch", w => w.Mirror.Run([Add(w.Rw), Add(w.Rw + 4)], new long[1]), P("oldValues"), "1 elements", "2 ops");
        t.Throws<ArgumentException>(Run, "a good op, then a 32-bit op misaligned: nothing runs", w => w.Mirror.Run([Add(w.Rw), Add(w.Rw + 2)]), w => [P("ops"), "op 1", Hex(w.Rw + 2), "4-byte-aligned"]);
        t.Throws<ArgumentException>(Run, "a 64-bit op 4-byte aligned", w => w.Mirror.Run([Add(w.Rw), Add(w.Rw + 4) with { Is64Bit = true }]), w => [P("ops"), "op 1", Hex(w.Rw + 4), "8-byte-aligned"]);
        t.Throws<ArgumentException>(Run, "an undefined AtomicKind", w => w.Mirror.Run([Add(w.Rw), Add(w.Rw) with { Kind = (AtomicKind)99 }]), [P("ops"), "op 1", "99"]);
        t.Throws<ArgumentException>(Run, "an op past the 47-bit space", w => w.Mirror.Run([Add(w.Rw), Add(PastSpace)]), [P("ops"), "op 1", Hex(PastSpace)]);
        t.Throws<ArgumentException>(Run, "an op at the top of the 64-bit range", w => w.Mirror.Run([Add(Top)]), [P("ops"), "op 0", Hex(Top)]);
        t.Throws<ArgumentException>(Run, "an op at a writable page's address plus 2^48", w => w.Mirror.Run([Add(w.Rw + AliasOffset)]), w => [P("ops"), Hex(w.Rw + AliasOffset)]);
        t.Throws<InsufficientMemoryException>(Run, "ops on more pages than the pool has free: nothing applied", w => w.Mirror.Run([.. Enumerable.Range(0, HostileWorld.BigPages).Select(p => Add(w.Big + ((ulong)p * Page)))]), "free frames");
        t.Throws<ObjectDisposedException>(Run, "on a disposed mirror", w => w.DisposedMirror.Run([Add(w.DisposedMirrorAddress)]), "DeviceMirror");
        t.Throws<ObjectDisposedException>(Run, "on a mirror whose space was disposed", w => w.OrphanMirror.Run([Add(w.OrphanMirrorAddress)]), "AddressSpace");
        const string Prepare = "DeviceMirror.Prepare(ops)";
        t.Throws<ArgumentException>(Prepare, "no ops", w => w.Mirror.Prepare([]), P("ops"), "at least one op");
        t.Throws<ArgumentException>(Prepare, "a good op, then a 32-bit op misaligned: nothing prepared", w => w.Mirror.Prepare([Add(w.Rw), Add(w.Rw + 2)]), w => [P("ops"), "op 1", Hex(w.Rw + 2), "4-byte-aligned"]);
        t.Throws<ArgumentException>(Prepare, "an undefined AtomicKind", w => w.Mirror.Prepare([Add(w.Rw), Add(w.Rw) with { Kind = (AtomicKind)99 }]), [P("ops"), "op 1", "99"]);
        t.Throws<ArgumentException>(Prepare, "an op past the 47-bit space", w => w.Mirror.Prepare([Add(w.Rw), Add(PastSpace)]), [P("ops"), "op 1", Hex(PastSpace)]);
        t.Throws<ObjectDisposedException>(Prepare, "on a disposed mirror", w => w.DisposedMirror.Prepare([Add(w.DisposedMirrorAddress)]), "DeviceMirror");
        t.Throws<ObjectDisposedException>(Prepare, "on a mirror whose space was disposed", w => w.OrphanMirror.Prepare([Add(w.OrphanMirrorAddress)]), "AddressSpace");

        const string RunPrepared = "DeviceMirror.Run(batch, oldValues)";
        t.Throws<ArgumentNullException>(RunPrepared, "a null batch", w => w.Mirror.Run((PreparedBatch)null!), P("batch"));
        t.Throws<ArgumentException>(RunPrepared, "oldValues shorter than the batch: nothing runs", w =>
        {
            using var batch = w.Mirror.Prepare([Add(w.Rw), Add(w.Rw + 4)]);
            w.Mirror.Run(batch, new long[1]);
        }, P("oldValues"), "1 elements", "2 ops");
        t.Throws<ArgumentException>(RunPrepared, "a batch prepared for another mirror: nothing runs", w =>
        {
            using var space = new AddressSpace(w.Pool);
            using var other = w.Mirror.Device.Mirror(space);
            using var batch = other.Prepare([Add(space.Map(Page, Protection.ReadWrite))]);
            w.Mirror.Run(batch);
        }, P("batch"), "another mirror");
        t.Throws<ObjectDisposedException>(RunPrepared, "a disposed batch", w =>
        {
            var batch = w.Mirror.Prepare([Add(w.Rw)]);
            batch.Dispose();
            w.Mirror.Run(batch);
        }, "PreparedBatch");
        t.Throws<ObjectDisposedException>(RunPrepared, "on its mirror after the mirror was disposed", w =>
        {
            using var space = new AddressSpace(w.Pool);
            var mirror = w.Mirror.Device.Mirror(space);
            using var batch = mirror.Prepare([Add(space.Map(Page, Protection.ReadWrite))]);
            mirror.Dispose();
            mirror.Run(batch);
        }, "DeviceMirror");

        foreach (var (name, address, notMapped) in new (string, Func<HostileWorld, ulong>, bool)[]
        {
            ("the hole", w => w.Hole, true), ("address 0", _ => 0, true), ("the last page of the space", _ => LastPage, true),
            ("a read-only area", w => w.Ro, false), ("a shared area", w => w.Shared, false), ("a Protection.None area", w => w.NoAccess, false),
        })
        {
            t.Answers(Run, $"an op on {name} is refused as {(notMapped ? "NotMapped" : "PermissionDenied")}, nothing applied", w =>
            {
                var result = w.Mirror.Run([Add(address(w))]);
                Assert.Equal(new BatchResult(0, notMapped ? 1 : 0, notMapped ? 0 : 1, result.DeviceFaults, result.Replays), result);
            });
        }
    }

    private static AtomicOp Add(ulong address) => new(address, AtomicKind.Add, 1);

    private static void AddDevice(Table t)
    {
        const string OpenKind = "ExclusiveDevice.Open(kind, loggerFactory)";
        t.Throws<ArgumentException>(OpenKind, "kind 99", _ => ExclusiveDevice.Open((AcceleratorKind)99).Dispose(), P("kind"), "99");
        t.Throws<ArgumentException>(OpenKind, "kind -1", _ => ExclusiveDevice.Open((AcceleratorKind)(-1)).Dispose(), P("kind"), "-1");
        t.Throws<NotSupportedException>(OpenKind, "OpenCL, which cannot map the pool zero-copy", _ => ExclusiveDevice.Open(AcceleratorKind.OpenCL).Dispose(), "OpenCL");

        const string OpenSettings = "ExclusiveDevice.Open(settings, loggerFactory)";
        t.Throws<ArgumentNullException>(OpenSettings, "null settings", _ => ExclusiveDevice.Open((EngineSettings)null!).Dispose(), P("settings"));
        t.Throws<ArgumentException>(OpenSettings, "accelerator 99", _ => ExclusiveDevice.Open(new EngineSettings { Accelerator = (AcceleratorKind)99 }).Dispose(), "99");
        // EngineSettings documents each range; a hand-built one that breaks it must not open a device that misbehaves
        // later: with -5000 µs the first revocation during a launch throws from Monitor.Wait inside the invalidation
        // callback, and the batch never finishes (the quiesce it began is never ended).
        t.Throws<ArgumentOutOfRangeException>(OpenSettings, "StopPollIntervalMicroseconds -5000", _ => ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, StopPollIntervalMicroseconds = -5000 }).Dispose(), "StopPollIntervalMicroseconds", "-5000");
        t.Throws<ArgumentOutOfRangeException>(OpenSettings, "KernelGroups -1", _ => ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, KernelGroups = -1 }).Dispose(), "KernelGroups", "-1");
        t.Throws<ArgumentOutOfRangeException>(OpenSettings, "KernelGroupSize -1", _ => ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, KernelGroupSize = -1 }).Dispose(), "KernelGroupSize", "-1");
        t.Throws<ArgumentOutOfRangeException>(OpenSettings, "ResidentBatchOps 65537", _ => ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, ResidentBatchOps = 65537 }).Dispose(), "ResidentBatchOps", "65537");
        t.Throws<ArgumentOutOfRangeException>(OpenSettings, "ResidentIdleMicroseconds 0", _ => ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, ResidentIdleMicroseconds = 0 }).Dispose(), "ResidentIdleMicroseconds", "0");

        const string Mirror = "ExclusiveDevice.Mirror(space)";
        t.Throws<ArgumentNullException>(Mirror, "null space", w => w.Mirror.Device.Mirror(null!), P("space"));
        t.Throws<ObjectDisposedException>(Mirror, "a disposed space", w => w.Mirror.Device.Mirror(w.DisposedSpace), "AddressSpace");
        t.Throws<InvalidOperationException>(Mirror, "a space the device already mirrors", w => w.Mirror.Device.Mirror(w.Space), "already has a mirror");
        t.Throws<ObjectDisposedException>(Mirror, "on a disposed device", w => w.Fixture.DisposedDevice.Mirror(w.Child), "ExclusiveDevice");

        const string MirrorPlaced = "ExclusiveDevice.Mirror(space, placement)";
        t.Throws<ArgumentNullException>(MirrorPlaced, "null space", w => w.Mirror.Device.Mirror(null!, PagePlacement.DeviceResident), P("space"));
        t.Throws<ArgumentOutOfRangeException>(MirrorPlaced, "placement 7", w => w.Mirror.Device.Mirror(w.Child, (PagePlacement)7), P("placement"), "7");
        t.Throws<ObjectDisposedException>(MirrorPlaced, "a disposed space", w => w.Mirror.Device.Mirror(w.DisposedSpace, PagePlacement.DeviceResident), "AddressSpace");
        t.Throws<InvalidOperationException>(MirrorPlaced, "a space the device already mirrors", w => w.Mirror.Device.Mirror(w.Space, PagePlacement.DeviceResident), "already has a mirror");
        t.Throws<ObjectDisposedException>(MirrorPlaced, "on a disposed device", w => w.Fixture.DisposedDevice.Mirror(w.Child, PagePlacement.DeviceResident), "ExclusiveDevice");
        t.Throws<ArgumentOutOfRangeException>(OpenSettings, "DeviceResidentPages 0", _ => ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, DeviceResidentPages = 0 }).Dispose(), "DeviceResidentPages", "0");
        t.Throws<ArgumentOutOfRangeException>(OpenSettings, "PagePlacement 9", _ => ExclusiveDevice.Open(new EngineSettings { Accelerator = AcceleratorKind.Cpu, PagePlacement = (PagePlacement)9 }).Dispose(), "PagePlacement", "9");
    }

    /// <summary>A value two pages long: no single access of it can stay inside a page.</summary>
    [InlineArray(8192)]
    private struct TwoPages
    {
        private byte _first;
    }

    private sealed class Table
    {
        public List<HostileCase> Cases { get; } = [];

        public void Add(HostileCase c) => Cases.Add(c);

        public void Throws<TException>(string member, string name, Action<HostileWorld> call, params string[] mustName)
            where TException : Exception => Add(new HostileCase(member, name, call, typeof(TException), _ => mustName));

        public void Throws<TException>(string member, string name, Action<HostileWorld> call, Func<HostileWorld, string[]> mustName)
            where TException : Exception => Add(new HostileCase(member, name, call, typeof(TException), mustName));

        /// <summary>A call that looks hostile but is defined: it must not throw, and <paramref name="call"/> asserts its answer.</summary>
        public void Answers(string member, string name, Action<HostileWorld> call) => Add(new HostileCase(member, name, call, null, _ => []));
    }
}
