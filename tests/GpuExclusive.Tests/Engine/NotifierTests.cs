namespace GpuExclusive.Tests.Engine;

/// <summary>
/// MMU notifiers: which operation fires which event, over which range, and that callbacks run before the PTEs
/// change (a callback may call <see cref="AddressSpace.Inspect"/> and still sees the old state).
/// </summary>
public sealed class NotifierTests : EngineTest
{
    /// <summary>Records every callback and, at each start, what <see cref="AddressSpace.Inspect"/> said about <see cref="Probe"/>.</summary>
    private sealed class Recorder(AddressSpace space) : MmuNotifier
    {
        private readonly Lock _gate = new(); // guards Log
        public List<(bool IsStart, NotifierRange Range, PageInfo? Seen, Exception? InspectError)> Log { get; } = [];
        public ulong? Probe { get; set; }

        public IEnumerable<NotifierRange> Starts(NotifierEvent e)
        {
            lock (_gate)
                return [.. Log.Where(x => x.IsStart && x.Range.Event == e).Select(x => x.Range)];
        }

        public PageInfo SeenAtStart(NotifierEvent e)
        {
            lock (_gate)
            {
                var entry = Log.First(x => x.IsStart && x.Range.Event == e);
                if (entry.InspectError is not null)
                    throw new Xunit.Sdk.XunitException($"Inspect from InvalidateStart threw: {entry.InspectError}");
                return entry.Seen!.Value;
            }
        }

        protected internal override void InvalidateStart(in NotifierRange range)
        {
            PageInfo? seen = null;
            Exception? error = null;
            if (Probe is { } probe && range.Event != NotifierEvent.Release)
            {
                try { seen = space.Inspect(probe); }
                catch (Exception e) { error = e; }
            }
            lock (_gate)
                Log.Add((true, range, seen, error));
        }

        protected internal override void InvalidateEnd(in NotifierRange range)
        {
            lock (_gate)
                Log.Add((false, range, null, null));
        }
    }

    /// <summary>Asserts the <paramref name="e"/> ranges together cover <c>[start, end)</c>, and, when <paramref name="exact"/>, reach no page outside it.</summary>
    private static void AssertCovers(IEnumerable<NotifierRange> ranges, ulong start, ulong end, bool exact = true)
    {
        var list = ranges.ToList();
        Assert.NotEmpty(list);
        for (var page = start; page < end; page += Page)
            Assert.Contains(list, r => r.Start <= page && page + Page <= r.End);
        if (exact)
            Assert.All(list, r => Assert.True(r.Start >= start && r.End <= end, $"[{r.Start:x}, {r.End:x}) reaches outside [{start:x}, {end:x})"));
    }

    [Fact]
    public void Unmap_FiresUnmap_OverTheRange()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 1);
        var rec = new Recorder(space);
        using var registration = space.RegisterNotifier(rec);

        space.Unmap(a + Page, 2 * Page);

        AssertCovers(rec.Starts(NotifierEvent.Unmap), a + Page, a + 3 * Page);
        Assert.Equal(PageState.Unmapped, space.Inspect(a + Page).State);
    }

    [Fact]
    public void Discard_FiresClear_OverTheRange()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 1);
        var rec = new Recorder(space);
        using var registration = space.RegisterNotifier(rec);

        space.Discard(a, Page);

        AssertCovers(rec.Starts(NotifierEvent.Clear), a, a + Page);
    }

    [Fact]
    public void Protect_FiresProtection_OverTheRange()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 1);
        var rec = new Recorder(space);
        using var registration = space.RegisterNotifier(rec);

        space.Protect(a + Page, Page, Protection.Read);

        AssertCovers(rec.Starts(NotifierEvent.Protection), a + Page, a + 2 * Page);
    }

    [Fact]
    public void Fork_FiresProtection_OverTheParentsPrivateMapping()
    {
        var parent = NewSpace();
        var a = parent.Map(2 * Page, Protection.ReadWrite);
        Fill(parent, a, 2, 1);
        var rec = new Recorder(parent);
        using var registration = parent.RegisterNotifier(rec);

        ForkOf(parent);

        AssertCovers(rec.Starts(NotifierEvent.Protection), a, a + 2 * Page);
    }

    [Fact]
    public void CowBreak_FiresClear_OnTheWriter_OverThePage()
    {
        var parent = NewSpace();
        var a = parent.Map(2 * Page, Protection.ReadWrite);
        Fill(parent, a, 2, 1);
        ForkOf(parent);
        var rec = new Recorder(parent);
        using var registration = parent.RegisterNotifier(rec);

        parent.Write(a + Page, 2);

        AssertCovers(rec.Starts(NotifierEvent.Clear), a + Page, a + 2 * Page);
    }

    [Fact]
    public void ClearSoftDirty_FiresSoftDirty_CoveringTheMappings()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 1);
        var rec = new Recorder(space);
        using var registration = space.RegisterNotifier(rec);

        space.ClearSoftDirty();

        // Linux's clear_refs invalidates the whole address space; only coverage is required.
        AssertCovers(rec.Starts(NotifierEvent.SoftDirty), a, a + 2 * Page, exact: false);
    }

    /// <summary>Operations whose invalidation a callback must see before the PTEs change, by name.</summary>
    public static TheoryData<string> ChangingOperations() => new() { "Unmap", "Discard", "Protect", "Fork", "CowBreak", "ClearSoftDirty" };

    /// <summary>
    /// A callback runs before the PTEs change: <see cref="AddressSpace.Inspect"/> called from
    /// <see cref="MmuNotifier.InvalidateStart"/> (which the contract allows) still shows the old entry.
    /// </summary>
    [Theory]
    [MemberData(nameof(ChangingOperations))]
    public void InvalidateStart_CanInspect_AndSeesTheOldPte(string operation)
    {
        var parent = NewSpace();
        var a = parent.Map(2 * Page, Protection.ReadWrite);
        Fill(parent, a, 2, 1);
        AddressSpace? child = operation == "CowBreak" ? ForkOf(parent) : null;
        var before = parent.Inspect(a + Page);
        var rec = new Recorder(parent) { Probe = a + Page };
        using var registration = parent.RegisterNotifier(rec);

        NotifierEvent expected;
        switch (operation)
        {
            case "Unmap": RunBounded(() => parent.Unmap(a + Page, Page)); expected = NotifierEvent.Unmap; break;
            case "Discard": RunBounded(() => parent.Discard(a + Page, Page)); expected = NotifierEvent.Clear; break;
            case "Protect": RunBounded(() => parent.Protect(a + Page, Page, Protection.Read)); expected = NotifierEvent.Protection; break;
            case "Fork": RunBounded(() => child = ForkOf(parent)); expected = NotifierEvent.Protection; break;
            case "CowBreak": RunBounded(() => parent.Write(a + Page, 2)); expected = NotifierEvent.Clear; break;
            case "ClearSoftDirty": RunBounded(parent.ClearSoftDirty); expected = NotifierEvent.SoftDirty; break;
            default: throw new ArgumentOutOfRangeException(nameof(operation), operation, null);
        }

        // The PTE as the callback saw it; the accessed bit and extra references a fault holds may differ.
        static object Pte(PageInfo p) => (p.State, p.Writable, p.Dirty, p.SoftDirty, p.Frame, p.MapCount);
        Assert.Equal(Pte(before), Pte(rec.SeenAtStart(expected)));
        Assert.NotEqual(Pte(before), Pte(parent.Inspect(a + Page)));
    }

    [Fact]
    public void Dispose_FiresRelease_CoveringTheMappings()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 1);
        var rec = new Recorder(space);
        space.RegisterNotifier(rec);

        RunBounded(() => DisposeSpace(space));

        AssertCovers(rec.Starts(NotifierEvent.Release), a, a + 2 * Page, exact: false);
    }

    [Fact]
    public void EveryStart_IsFollowedByAMatchingEnd()
    {
        var parent = NewSpace();
        var a = parent.Map(4 * Page, Protection.ReadWrite);
        Fill(parent, a, 4, 1);
        var rec = new Recorder(parent);
        parent.RegisterNotifier(rec);

        RunBounded(() =>
        {
            var child = ForkOf(parent);
            parent.Write(a, 2);
            parent.Protect(a + Page, Page, Protection.Read);
            parent.ClearSoftDirty();
            parent.Discard(a + 2 * Page, Page);
            parent.Unmap(a + 3 * Page, Page);
            DisposeSpace(parent);
        });

        var open = new List<NotifierRange>();
        foreach (var (isStart, range, _, _) in rec.Log)
        {
            if (isStart)
                open.Add(range);
            else
                Assert.True(open.Remove(range), $"InvalidateEnd {range} without a matching InvalidateStart");
        }
        Assert.Empty(open);
        foreach (var e in new[] { NotifierEvent.Protection, NotifierEvent.Clear, NotifierEvent.SoftDirty, NotifierEvent.Unmap, NotifierEvent.Release })
            Assert.NotEmpty(rec.Starts(e));
    }

    [Fact]
    public void FirstTouchAndReads_FireNoInvalidation()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        var rec = new Recorder(space);
        using var registration = space.RegisterNotifier(rec);

        space.Write(a, 1);
        _ = space.Read<int>(a + Page);
        space.AtomicAdd(a + 4, 1);
        _ = space.Inspect(a);

        Assert.Empty(rec.Log);
    }

    [Fact]
    public void DisposingTheRegistration_StopsTheCallbacks()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 1);
        var rec = new Recorder(space);
        var registration = space.RegisterNotifier(rec);
        space.Discard(a, Page);
        var count = rec.Log.Count;
        Assert.NotEqual(0, count);

        registration.Dispose();
        space.Discard(a + Page, Page);
        space.Unmap(a, 2 * Page);

        Assert.Equal(count, rec.Log.Count);
    }

    [Fact]
    public void TwoNotifiers_BothSeeEveryEvent()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        var first = new Recorder(space);
        var second = new Recorder(space);
        using var r1 = space.RegisterNotifier(first);
        using var r2 = space.RegisterNotifier(second);

        space.Protect(a, Page, Protection.Read);
        space.Unmap(a, Page);

        Assert.Equal(first.Log.Select(x => (x.IsStart, x.Range)), second.Log.Select(x => (x.IsStart, x.Range)));
        Assert.NotEmpty(first.Starts(NotifierEvent.Unmap));
    }

    [Fact]
    public void ForkedChild_DoesNotInheritTheParentsNotifiers()
    {
        var parent = NewSpace();
        var a = parent.Map(Page, Protection.ReadWrite);
        parent.Write(a, 1);
        var rec = new Recorder(parent);
        using var registration = parent.RegisterNotifier(rec);
        var child = ForkOf(parent);
        var count = rec.Log.Count;

        child.Write(a, 2);
        child.Protect(a, Page, Protection.Read);
        child.Unmap(a, Page);
        DisposeSpace(child);

        Assert.Equal(count, rec.Log.Count);
    }

    /// <summary>A callback that changes the space from inside a fault (whose caller holds the mmap lock for reading).</summary>
    private sealed class Remapper(AddressSpace space) : MmuNotifier
    {
        public Exception? Refusal { get; private set; }

        protected internal override void InvalidateStart(in NotifierRange range)
        {
            if (range.Event != NotifierEvent.Clear)
                return;
            try { space.Map(Page, Protection.ReadWrite); }
            catch (Exception e) { Refusal = e; }
        }
    }

    [Fact]
    public void CallbackOfAFault_ThatWouldChangeTheSpace_IsRefused_NotDeadlocked()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        var child = space.Fork();
        var remapper = new Remapper(space);
        using (space.RegisterNotifier(remapper))
        {
            // The copy-on-write fault fires Clear with the mmap lock held for reading: mapping would need it for writing.
            var write = TestThread.Start(() => space.Write(a, 2));
            Assert.True(write.Join(TimeSpan.FromSeconds(30)), "the callback deadlocked on its caller's mmap lock");
        }

        Assert.IsType<LockRecursionException>(remapper.Refusal);
        Assert.Equal(2, space.Read<int>(a));
        Assert.Equal(1, child.Read<int>(a));
        Assert.Single(space.DescribeAreas());
        DisposeSpace(child);
    }
}
