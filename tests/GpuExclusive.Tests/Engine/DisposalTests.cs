namespace GpuExclusive.Tests.Engine;

/// <summary>Teardown: every frame returns to the pool (docs/architecture.md, invariant 5), in any disposal order, and a disposed space refuses every call.</summary>
public sealed class DisposalTests : EngineTest
{
    /// <summary>All 24 orders in which to dispose a fork chain of four spaces (parent, child, grandchild, great-grandchild).</summary>
    public static TheoryData<int[]> DisposalOrders()
    {
        var data = new TheoryData<int[]>();
        foreach (var order in Permutations([0, 1, 2, 3]))
            data.Add(order);
        return data;
    }

    private static IEnumerable<int[]> Permutations(int[] items)
    {
        if (items.Length <= 1)
        {
            yield return items;
            yield break;
        }
        for (var i = 0; i < items.Length; i++)
            foreach (var rest in Permutations([.. items[..i], .. items[(i + 1)..]]))
                yield return [items[i], .. rest];
    }

    [Fact]
    public void Dispose_ReturnsEveryFrame()
    {
        var space = NewSpace();
        var a = space.Map(8 * Page, Protection.ReadWrite);
        var b = space.Map(2 * Page, Protection.ReadWrite, Sharing.Shared);
        Fill(space, a, 8, 1);
        Fill(space, b, 2, 1);
        Assert.Equal(Pool.Capacity - 10, Pool.FreePages);

        DisposeSpace(space);

        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    [Theory]
    [MemberData(nameof(DisposalOrders))]
    public void ForkChain_DisposedInAnyOrder_ReturnsEveryFrame(int[] order)
    {
        const int Pages = 4;
        var spaces = new AddressSpace[4];
        spaces[0] = NewSpace();
        var priv = spaces[0].Map(Pages * Page, Protection.ReadWrite);
        var shared = spaces[0].Map(Page, Protection.ReadWrite, Sharing.Shared);
        Fill(spaces[0], priv, Pages, 0xF0);
        spaces[0].Write(shared, 0);
        for (var g = 1; g < 4; g++)
        {
            spaces[g] = ForkOf(spaces[g - 1]);
            // Each generation rewrites some pages (COW copies) and leaves others shared with its ancestors.
            spaces[g].Write(priv + (ulong)(g % Pages) * Page, g);
            spaces[g].AtomicAdd(shared, 1);
        }
        spaces[1].Lock(priv, Pages * Page);
        spaces[2].Protect(priv + Page, Page, Protection.Read);
        spaces[3].Discard(priv + 2 * Page, Page);
        AssertInvariants();

        var alive = new HashSet<int>([0, 1, 2, 3]);
        foreach (var victim in order)
        {
            DisposeSpace(spaces[victim]);
            alive.Remove(victim);
            AssertInvariants();
            foreach (var g in alive)
            {
                // The survivors still see their own view of every page.
                Assert.Equal(3, spaces[g].Read<int>(shared));
                for (var p = 0; p < Pages; p++)
                {
                    var address = priv + (ulong)p * Page;
                    var expected = ExpectedValue(g, p);
                    Assert.Equal(expected, spaces[g].Read<int>(address));
                }
            }
        }

        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    /// <summary>What generation <paramref name="g"/> reads at page <paramref name="p"/> in the fork-chain test.</summary>
    private static int ExpectedValue(int g, int p)
    {
        if (g == 3 && p == 2)
            return 0; // discarded
        // The newest generation up to g that wrote page p (generation k writes page k % 4).
        for (var k = g; k >= 1; k--)
            if (k % 4 == p)
                return k;
        return unchecked((int)0xF0F0F0F0);
    }

    [Fact]
    public void LongForkChain_WithWritesEverywhere_ReturnsEveryFrame()
    {
        var pool = CreatePool(256);
        var root = NewSpace(pool);
        var a = root.Map(8 * Page, Protection.ReadWrite);
        Fill(root, a, 8, 7);
        var chain = new List<AddressSpace> { root };
        for (var g = 1; g < 12; g++)
        {
            var child = ForkOf(chain[^1]);
            child.Write(a + (ulong)(g % 8) * Page, g);
            chain.Add(child);
        }
        AssertInvariants();

        // Parents first, then the rest from the middle outwards.
        foreach (var g in new[] { 0, 1, 2, 6, 5, 7, 4, 8, 3, 11, 9, 10 })
            DisposeSpace(chain[g]);

        Assert.Equal(pool.Capacity, pool.FreePages);
    }

    [Fact]
    public void Dispose_Twice_IsHarmless()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);

        space.Dispose();
        space.Dispose();

        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    [Fact]
    public void Dispose_OfParent_LeavesTheChildsDataIntact()
    {
        var parent = NewSpace();
        var a = parent.Map(2 * Page, Protection.ReadWrite);
        Fill(parent, a, 2, 0x81);
        var child = ForkOf(parent);

        DisposeSpace(parent);

        AssertAllBytes(0x81, ReadPages(child, a, 2));
        Assert.Equal(1, child.Inspect(a).MapCount);
        child.Write(a, 1);
        Assert.Equal(Pool.Capacity - 2, Pool.FreePages);
    }

    /// <summary>Every public member of <see cref="AddressSpace"/> except Dispose, by name.</summary>
    public static TheoryData<string> Members() => new()
    {
        "Map", "Unmap", "Protect", "Lock", "Unlock", "Discard", "Fork", "ClearSoftDirty", "ReadT", "WriteT",
        "ReadSpan", "WriteSpan", "AtomicAdd", "Inspect", "RegisterNotifier", "InsertIntervalNotifier",
    };

    private sealed class NullNotifier : MmuNotifier;

    private sealed class NullInterval : MmuIntervalNotifier
    {
        protected override void Invalidate(in NotifierRange range) { }
    }

    [Theory]
    [MemberData(nameof(Members))]
    public void Call_OnADisposedSpace_ThrowsObjectDisposed(string member)
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 1);
        DisposeSpace(space);

        Action call = member switch
        {
            "Map" => () => space.Map(Page, Protection.ReadWrite),
            "Unmap" => () => space.Unmap(a, Page),
            "Protect" => () => space.Protect(a, Page, Protection.Read),
            "Lock" => () => space.Lock(a, Page),
            "Unlock" => () => space.Unlock(a, Page),
            "Discard" => () => space.Discard(a, Page),
            "Fork" => () => Track(space.Fork()),
            "ClearSoftDirty" => space.ClearSoftDirty,
            "ReadT" => () => space.Read<int>(a),
            "WriteT" => () => space.Write(a, 2),
            "ReadSpan" => () => space.Read(a, new byte[4]),
            "WriteSpan" => () => space.Write(a, new byte[4]),
            "AtomicAdd" => () => space.AtomicAdd(a, 1),
            "Inspect" => () => space.Inspect(a),
            "RegisterNotifier" => () => space.RegisterNotifier(new NullNotifier()),
            "InsertIntervalNotifier" => () => space.InsertIntervalNotifier(new NullInterval(), a, Page),
            _ => throw new ArgumentOutOfRangeException(nameof(member), member, null),
        };

        Assert.Throws<ObjectDisposedException>(call);
        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    [Fact]
    public void Dispose_OfLockedProtectedAndSplitMappings_ReturnsEveryFrame()
    {
        var space = NewSpace();
        var a = space.Map(6 * Page, Protection.ReadWrite);
        Fill(space, a, 6, 1);
        space.Lock(a + Page, 2 * Page);
        space.Protect(a + 3 * Page, Page, Protection.None);
        space.Unmap(a + 4 * Page, Page);
        space.ClearSoftDirty();

        DisposeSpace(space);

        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }

    [Fact]
    public void Dispose_WithNotifiersStillRegistered_ReturnsEveryFrame()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 1);
        space.RegisterNotifier(new NullNotifier());
        space.InsertIntervalNotifier(new NullInterval(), a, Page);

        DisposeSpace(space);

        Assert.Equal(Pool.Capacity, Pool.FreePages);
    }
}
