namespace GpuExclusive.Tests.Engine;

/// <summary>
/// Interval notifiers and their sequence (<c>mmu_interval_read_begin/retry</c>): only invalidations that overlap
/// the interval and are not ignored make <see cref="MmuIntervalNotifier.ReadRetry"/> true.
/// </summary>
public sealed class IntervalNotifierTests : EngineTest
{
    private sealed class Interval(AddressSpace? space = null, ulong probe = 0) : MmuIntervalNotifier
    {
        private readonly Lock _gate = new(); // guards Seen and SeenStates
        public List<NotifierRange> Seen { get; } = [];
        public List<PageState> SeenStates { get; } = [];
        public Func<NotifierRange, bool>? IgnoreWhen { get; init; }

        public int Count
        {
            get { lock (_gate) return Seen.Count; }
        }

        protected override bool Ignores(in NotifierRange range) => IgnoreWhen?.Invoke(range) ?? false;

        protected override void Invalidate(in NotifierRange range)
        {
            var state = space is null || range.Event == NotifierEvent.Release ? PageState.Unmapped : space.Inspect(probe).State;
            lock (_gate)
            {
                Seen.Add(range);
                SeenStates.Add(state);
            }
        }
    }

    /// <summary>A 3-page private mapping, fully written, with an interval notifier over its middle page.</summary>
    /// <remarks>With <paramref name="probe"/>, the notifier also inspects the middle page from its callback.</remarks>
    private (AddressSpace Space, ulong Address, Interval Notifier, IDisposable Registration) Setup(Func<NotifierRange, bool>? ignore = null, bool probe = false)
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 1);
        var n = new Interval(probe ? space : null, a + Page) { IgnoreWhen = ignore };
        var registration = space.InsertIntervalNotifier(n, a + Page, Page);
        return (space, a, n, registration);
    }

    /// <summary>Operations that must invalidate the middle page, by name.</summary>
    public static TheoryData<string> OverlappingOperations() => new()
    {
        "Unmap", "Discard", "Protect", "ClearSoftDirty", "Fork", "CowBreak", "Dispose",
    };

    private void RunOverlapping(string operation, AddressSpace space, ulong a)
    {
        switch (operation)
        {
            case "Unmap": space.Unmap(a + Page, Page); break;
            case "Discard": space.Discard(a + Page, Page); break;
            case "Protect": space.Protect(a + Page, Page, Protection.Read); break;
            case "ClearSoftDirty": space.ClearSoftDirty(); break;
            case "Fork": ForkOf(space); break;
            case "CowBreak": space.Write(a + Page, 2); break;
            case "Dispose": DisposeSpace(space); break;
            default: throw new ArgumentOutOfRangeException(nameof(operation), operation, null);
        }
    }

    [Fact]
    public void ReadRetry_WithNoInvalidation_IsFalse()
    {
        var (space, a, n, _) = Setup();
        var seq = n.ReadBegin();

        space.Write(a + Page, 5);
        _ = space.Read<int>(a + Page);
        space.AtomicAdd(a + Page + 8, 1);
        var b = space.Map(Page, Protection.ReadWrite);
        space.Write(b, 1);

        Assert.False(n.ReadRetry(seq));
        Assert.Equal(0, n.Count);
    }

    [Theory]
    [MemberData(nameof(OverlappingOperations))]
    public void ReadRetry_AfterAnOverlappingInvalidation_IsTrue(string operation)
    {
        var (space, a, n, _) = Setup();
        if (operation == "CowBreak")
            ForkOf(space);
        var seq = n.ReadBegin();

        RunBounded(() => RunOverlapping(operation, space, a));

        Assert.True(n.ReadRetry(seq));
        Assert.NotEqual(0, n.Count);
        Assert.All(n.Seen, r => Assert.True(r.Overlaps(a + Page, a + 2 * Page)));
    }

    [Fact]
    public void Invalidate_RunsBeforeThePtesChange()
    {
        var (space, a, n, _) = Setup(probe: true);

        RunBounded(() => space.Discard(a + Page, Page));

        Assert.Equal([PageState.Present], n.SeenStates);
        Assert.Equal(NotifierEvent.Clear, Assert.Single(n.Seen).Event);
    }

    [Fact]
    public void ReadRetry_AfterInvalidationsOutsideTheInterval_IsFalse()
    {
        var (space, a, n, _) = Setup();
        var child = ForkOf(space);
        space.Write(a + Page, 3); // break COW in the interval now, before the sequence is read
        var calls = n.Count;
        var seq = n.ReadBegin();

        space.Write(a, 2); // COW break outside
        space.Discard(a, Page);
        space.Protect(a + 2 * Page, Page, Protection.Read);
        space.Unmap(a + 2 * Page, Page);
        child.Discard(a + Page, Page); // another space entirely
        child.Unmap(a, 3 * Page);

        Assert.False(n.ReadRetry(seq));
        Assert.Equal(calls, n.Count);
    }

    [Fact]
    public void ReadRetry_AfterAnIgnoredInvalidation_IsFalse_ButNotAfterOthers()
    {
        var (space, a, n, _) = Setup(ignore: r => r.Event == NotifierEvent.Protection);
        var seq = n.ReadBegin();

        space.Protect(a, 3 * Page, Protection.Read);
        Assert.False(n.ReadRetry(seq));

        space.Discard(a + Page, Page);
        Assert.True(n.ReadRetry(seq));
    }

    [Fact]
    public void ReadBegin_AfterARetry_StartsAValidReadAgain()
    {
        var (space, a, n, _) = Setup();
        var first = n.ReadBegin();
        space.Discard(a + Page, Page);
        Assert.True(n.ReadRetry(first));

        var second = n.ReadBegin();

        Assert.False(n.ReadRetry(second));
        Assert.True(n.ReadRetry(first));
        space.Protect(a + Page, Page, Protection.Read);
        Assert.True(n.ReadRetry(second));
    }

    [Fact]
    public void Interval_CoveringOnlyPartOfARange_IsStillInvalidated()
    {
        var (space, a, n, _) = Setup();
        var seq = n.ReadBegin();

        space.Discard(a, 3 * Page);

        Assert.True(n.ReadRetry(seq));
        Assert.All(n.Seen, r => Assert.True(r.Overlaps(a + Page, a + 2 * Page)));
    }

    [Fact]
    public void RemovedIntervalNotifier_IsNoLongerCalled()
    {
        var (space, a, n, registration) = Setup();
        registration.Dispose();

        space.Discard(a + Page, Page);
        space.Unmap(a, 3 * Page);

        Assert.Equal(0, n.Count);
    }

    [Fact]
    public void TwoIntervals_OnlyTheOverlappedOneRetries()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 1);
        var low = new Interval();
        var high = new Interval();
        using var r1 = space.InsertIntervalNotifier(low, a, Page);
        using var r2 = space.InsertIntervalNotifier(high, a + Page, Page);
        var lowSeq = low.ReadBegin();
        var highSeq = high.ReadBegin();

        space.Discard(a + Page, Page);

        Assert.False(low.ReadRetry(lowSeq));
        Assert.True(high.ReadRetry(highSeq));
    }

    [Fact]
    public async Task SeventyIntervals_OnOnePage_EachHonouredOneIsInvalidatedAndEnded_IgnoredOnesAreNot()
    {
        // More intervals than the 64 whose answer an invalidation keeps in bits: past them it asks again.
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        var intervals = Enumerable.Range(0, 70)
            .Select(i => new Interval { IgnoreWhen = i % 3 == 2 ? _ => true : null })
            .ToArray();
        var registrations = intervals.Select(n => space.InsertIntervalNotifier(n, a, Page)).ToList();
        var before = intervals.Select(n => n.ReadBegin()).ToArray();

        space.Protect(a, Page, Protection.Read);

        for (var i = 0; i < intervals.Length; i++)
        {
            var honoured = i % 3 != 2;
            Assert.Equal(honoured, intervals[i].ReadRetry(before[i]));
            Assert.Equal(honoured ? 1 : 0, intervals[i].Count);
            // Ended: a new read begins at once (an invalidation left open would park it for good).
            var begun = await Task.Run(intervals[i].ReadBegin).WaitAsync(TimeSpan.FromSeconds(10)); // TimeoutException: never ended
            Assert.False(intervals[i].ReadRetry(begun));
        }

        registrations.ForEach(r => r.Dispose());
    }

    private sealed class CallbackInterval(Action onInvalidate) : MmuIntervalNotifier
    {
        protected override void Invalidate(in NotifierRange range) => onInvalidate();
    }

    /// <summary>Holds the invalidation that calls it open: sets <see cref="Open"/>, then waits (10 s at most) for <see cref="LetGo"/>.</summary>
    private sealed class BlockingInterval : MmuIntervalNotifier, IDisposable
    {
        public ManualResetEventSlim Open { get; } = new();

        public ManualResetEventSlim LetGo { get; } = new();

        protected override void Invalidate(in NotifierRange range)
        {
            Open.Set();
            LetGo.Wait(TimeSpan.FromSeconds(10));
        }

        public void Dispose()
        {
            Open.Dispose();
            LetGo.Dispose();
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(70)]
    public async Task IntervalInsertedWhileAnInvalidationIsOpen_IsNotEndedByIt(int fillers)
    {
        // Whether an interval honours an invalidation is decided when it starts: one inserted over the range while it is
        // open (its callbacks still running) had no mark and must get no end, or its count goes off and ReadBegin
        // parks for good. With 70 fillers ahead of it, the probe sits past the 64 intervals whose bits fit in one word.
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        Fill(space, a, 3, 1);
        var invalidated = a;
        var elsewhere = a + (2 * Page);
        var fillerRegistrations = Enumerable.Range(0, fillers).Select(_ => space.InsertIntervalNotifier(new Interval(), elsewhere, Page)).ToList();
        using var blocker = new BlockingInterval();
        using var blockerRegistration = space.InsertIntervalNotifier(blocker, invalidated, Page);
        var probe = new Interval();
        var probeRegistration = space.InsertIntervalNotifier(probe, elsewhere, Page);
        var before = probe.ReadBegin();

        var discard = Task.Run(() => space.Discard(invalidated, Page));
        Assert.True(blocker.Open.Wait(TimeSpan.FromSeconds(10)), "the invalidation never reached the blocking callback");
        probeRegistration.Dispose();
        probeRegistration = space.InsertIntervalNotifier(probe, invalidated, Page);
        blocker.LetGo.Set();
        await discard.WaitAsync(TimeSpan.FromSeconds(10));

        var after = await Task.Run(probe.ReadBegin).WaitAsync(TimeSpan.FromSeconds(10)); // TimeoutException: its count is off
        Assert.False(probe.ReadRetry(before));
        Assert.Equal(0, probe.Count);
        // And the probe works where it is now: an invalidation there is seen, and ends.
        space.Discard(invalidated, Page);
        Assert.True(probe.ReadRetry(after));
        await Task.Run(probe.ReadBegin).WaitAsync(TimeSpan.FromSeconds(10));
        probeRegistration.Dispose();
        fillerRegistrations.ForEach(r => r.Dispose());
    }

    [Fact]
    public async Task DisposingARegistration_WaitsForTheInvalidationInProgress_AndTheCallbackNeverRunsAfterIt()
    {
        // mmu_interval_notifier_remove: once removal returns, the callback is not running and will not run.
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        using var blocker = new BlockingInterval();
        using var blockerRegistration = space.InsertIntervalNotifier(blocker, a, Page);
        var disposed = false;
        var calledAfterDispose = false;
        var probe = new CallbackInterval(() => calledAfterDispose |= Volatile.Read(ref disposed));
        var probeRegistration = space.InsertIntervalNotifier(probe, a, Page);

        var discard = Task.Run(() => space.Discard(a, Page));
        Assert.True(blocker.Open.Wait(TimeSpan.FromSeconds(10)), "the invalidation never reached the blocking callback");
        var removal = Task.Run(() =>
        {
            probeRegistration.Dispose();
            Volatile.Write(ref disposed, true);
        });
        await Task.WhenAny(removal, Task.Delay(100));
        Assert.False(Volatile.Read(ref disposed), "the registration was disposed while an invalidation that marked it was in progress");
        blocker.LetGo.Set();
        await Task.WhenAll(discard, removal).WaitAsync(TimeSpan.FromSeconds(10));

        space.Discard(a, Page);
        Assert.False(calledAfterDispose);
    }

    [Fact]
    public void DisposingARegistrationFromACallback_IsRefused_AndTheNotifierStaysInserted()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        var probe = new Interval();
        var probeRegistration = space.InsertIntervalNotifier(probe, a, Page);
        Exception? refused = null;
        using var disposerRegistration = space.InsertIntervalNotifier(new CallbackInterval(() =>
        {
            try
            {
                probeRegistration.Dispose();
            }
            catch (InvalidOperationException e)
            {
                refused = e;
            }
        }), a, Page);

        space.Discard(a, Page);

        Assert.NotNull(refused);
        Assert.Contains("callback", refused.Message);
        var countAfterRefusal = probe.Count;
        space.Discard(a, Page);
        Assert.Equal(countAfterRefusal + 1, probe.Count); // still inserted
        disposerRegistration.Dispose();
        probeRegistration.Dispose(); // outside a callback it goes through
        space.Discard(a, Page);
        Assert.Equal(countAfterRefusal + 1, probe.Count);
    }

    [Fact]
    public async Task DisposingARegistrationFromACallbackOfAnotherSpace_NestedInThisSpacesInvalidation_IsRefused()
    {
        // A callback of space A changes space B; B's callback then disposes a registration of A whose notifier A's open
        // invalidation marked. Waiting for that invalidation would wait for this very thread: refused, not a hang.
        var spaceA = NewSpace();
        var spaceB = NewSpace();
        var a = spaceA.Map(Page, Protection.ReadWrite);
        var b = spaceB.Map(Page, Protection.ReadWrite);
        spaceA.Write(a, 1);
        spaceB.Write(b, 1);
        var probe = new Interval();
        // Disposed at the end, not by using: after a hang they would wait for it too.
        var probeRegistration = spaceA.InsertIntervalNotifier(probe, a, Page);
        Exception? refused = null;
        var disposerRegistration = spaceB.InsertIntervalNotifier(new CallbackInterval(() =>
        {
            try
            {
                probeRegistration.Dispose();
            }
            catch (InvalidOperationException e)
            {
                refused = e;
            }
        }), b, Page);
        var triggerRegistration = spaceA.InsertIntervalNotifier(new CallbackInterval(() => spaceB.Discard(b, Page)), a, Page);

        var discard = Task.Run(() => spaceA.Discard(a, Page));

        await discard.WaitAsync(TimeSpan.FromSeconds(10)); // TimeoutException: the nested removal waited for its own invalidation
        Assert.NotNull(refused);
        var count = probe.Count;
        spaceA.Discard(a, Page);
        Assert.Equal(count + 1, probe.Count); // still inserted
        triggerRegistration.Dispose();
        disposerRegistration.Dispose();
        probeRegistration.Dispose();
    }

    [Fact]
    public async Task ACallbackThatThrows_FailsTheOperation_ButTheIntervalsItsInvalidationMarkedStillEnd()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        var probe = new Interval();
        using var probeRegistration = space.InsertIntervalNotifier(probe, a, Page);
        var before = probe.ReadBegin();
        using var throwerRegistration = space.InsertIntervalNotifier(new CallbackInterval(() => throw new InvalidOperationException("callback refused")), a, Page);

        Assert.Throws<InvalidOperationException>(() => space.Discard(a, Page));

        Assert.True(probe.ReadRetry(before));
        await Task.Run(probe.ReadBegin).WaitAsync(TimeSpan.FromSeconds(10)); // TimeoutException: the probe's mark never ended
    }

    [Fact]
    public async Task MillionsOfInvalidationsInProgressAtOnce_NeitherCarryIntoTheSequence_NorLoseTheirEnd()
    {
        // The sequence and the in-progress count share one word; a fork holds one invalidation per area at once, so
        // the count must hold far more than threads could (a 20-bit count overflowed at 2^20 areas). 2^24 at once: a
        // count of 24 bits or fewer reads zero here, and a ReadBegin would return in the middle of them.
        const int inProgress = 1 << 24;
        var n = new Interval();
        var sequence = n.ReadBegin();

        for (var i = 0; i < inProgress; i++)
        {
            n.MarkInvalidating();
        }

        Assert.True(n.ReadRetry(sequence));
        Assert.Equal(inProgress, n.InvalidationsInProgress);
        var waiting = Task.Run(n.ReadBegin);
        await Task.WhenAny(waiting, Task.Delay(100));
        Assert.False(waiting.IsCompleted, "ReadBegin returned while invalidations were in progress");
        for (var i = 0; i < inProgress; i++)
        {
            n.EndInvalidation();
        }

        var after = await waiting.WaitAsync(TimeSpan.FromSeconds(10)); // TimeoutException: still waiting after every end
        // Every invalidation began after the first sequence: it moved on by exactly as many (no carry from the count).
        Assert.Equal(sequence + inProgress, after);
        Assert.False(n.ReadRetry(after));
    }

    [Theory]
    [InlineData(1UL, 4096UL)]
    [InlineData(0UL, 0UL)]
    [InlineData(0UL, 100UL)]
    public void InsertIntervalNotifier_BadRange_Throws(ulong offset, ulong length)
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);

        Assert.ThrowsAny<ArgumentException>(() => space.InsertIntervalNotifier(new Interval(), a + offset, length));
    }

    [Fact]
    public void InsertingAnInsertedNotifierAgain_Throws_AndLeavesItsIntervalAlone()
    {
        var (space, a, n, registration) = Setup();
        var other = NewSpace();
        var b = other.Map(Page, Protection.ReadWrite);

        Assert.Throws<InvalidOperationException>(() => space.InsertIntervalNotifier(n, a, Page));
        Assert.Throws<InvalidOperationException>(() => other.InsertIntervalNotifier(n, b, Page));

        // Still watching the middle page of the first space, and only it.
        Assert.Equal((a + Page, a + (2 * Page)), (n.Start, n.End));
        space.Discard(a, Page);
        other.Discard(b, Page);
        Assert.Equal(0, n.Count);
        space.Discard(a + Page, Page);
        Assert.Equal(1, n.Count);

        // Once removed it may be inserted anew, anywhere.
        registration.Dispose();
        using var again = other.InsertIntervalNotifier(n, b, Page);
        other.Discard(b, Page);
        Assert.Equal(2, n.Count);
    }
}
