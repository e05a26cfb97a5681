using System.Runtime.InteropServices;

namespace GpuExclusive.Tests.Engine;

/// <summary>First touch allocates a zeroed frame; accesses round-trip; freed frames never leak old data.</summary>
public sealed class DemandZeroTests : EngineTest
{
    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    private readonly record struct Triple(long A, int B, byte C);

    [Fact]
    public void Map_AllocatesNoFrames_AndPagesAreNotPresent()
    {
        var space = NewSpace();
        var free = Pool.FreePages;

        var a = space.Map(16 * Page, Protection.ReadWrite);

        Assert.Equal(free, Pool.FreePages);
        for (ulong i = 0; i < 16; i++)
        {
            var info = space.Inspect(a + i * Page);
            Assert.Equal(PageState.NotPresent, info.State);
            Assert.Equal(-1, info.Frame);
        }
    }

    [Fact]
    public void Map_ReturnsDistinctPageAlignedRanges()
    {
        var space = NewSpace();
        var ranges = new List<(ulong Start, ulong End)>();
        foreach (var pages in new ulong[] { 1, 3, 1, 8, 2 })
        {
            var a = space.Map(pages * Page, Protection.ReadWrite);
            Assert.Equal(0UL, a % Page);
            Assert.NotEqual(0UL, a);
            ranges.Add((a, a + pages * Page));
        }

        for (var i = 0; i < ranges.Count; i++)
            for (var j = i + 1; j < ranges.Count; j++)
                Assert.False(ranges[i].Start < ranges[j].End && ranges[j].Start < ranges[i].End, $"mappings {i} and {j} overlap");
    }

    [Fact]
    public void Inspect_OutsideEveryMapping_IsUnmapped()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);

        Assert.Equal(PageState.Unmapped, space.Inspect(0).State);
        Assert.Equal(-1, space.Inspect(0).Frame);
        space.Unmap(a, Page);
        Assert.Equal(PageState.Unmapped, space.Inspect(a).State);
    }

    [Fact]
    public void FirstRead_AllocatesZeroedFrame_PresentYoungNotDirty()
    {
        var space = NewSpace();
        var a = space.Map(2 * Page, Protection.ReadWrite);
        var free = Pool.FreePages;

        Assert.Equal(0L, space.Read<long>(a + 8));

        Assert.Equal(free - 1, Pool.FreePages);
        var info = space.Inspect(a);
        Assert.Equal(PageState.Present, info.State);
        Assert.False(info.Dirty);
        Assert.True(info.Young);
        Assert.True(info.Frame >= 0);
        Assert.Equal(1, info.MapCount);
        Assert.True(info.RefCount >= info.MapCount);
        AssertAllBytes(0, ReadPages(space, a));
        Assert.Equal(PageState.NotPresent, space.Inspect(a + Page).State);
    }

    [Fact]
    public void FirstWrite_AllocatesFrame_WritableDirtyYoungSoftDirty()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        var free = Pool.FreePages;

        space.Write(a + 100, 0xDEADBEEFu);

        Assert.Equal(free - 1, Pool.FreePages);
        var info = space.Inspect(a);
        Assert.Equal(PageState.Present, info.State);
        Assert.True(info.Writable);
        Assert.True(info.Dirty);
        Assert.True(info.Young);
        Assert.True(info.SoftDirty);
        Assert.Equal(1, info.MapCount);
        Assert.Equal(1, info.RefCount);
    }

    [Fact]
    public void ReadAfterWrite_DoesNotAllocateAgain()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        space.Write(a, 5);
        var free = Pool.FreePages;
        var frame = space.Inspect(a).Frame;

        Assert.Equal(5, space.Read<int>(a));
        space.Write(a + 4, 6);

        Assert.Equal(free, Pool.FreePages);
        Assert.Equal(frame, space.Inspect(a).Frame);
    }

    [Fact]
    public void WriteAfterFirstRead_MakesPageDirty_OnTheSameFrame()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        _ = space.Read<int>(a);
        var frame = space.Inspect(a).Frame;
        var free = Pool.FreePages;

        space.Write(a, 9);

        var info = space.Inspect(a);
        Assert.True(info.Dirty);
        Assert.True(info.Writable);
        Assert.Equal(9, space.Read<int>(a));
        Assert.Equal(frame, info.Frame);
        Assert.Equal(free, Pool.FreePages);
    }

    [Fact]
    public void TouchedPages_GetDistinctFrames()
    {
        var space = NewSpace();
        var a = space.Map(4 * Page, Protection.ReadWrite);
        for (ulong i = 0; i < 4; i++)
            space.Write(a + i * Page, (int)i);

        var frames = Enumerable.Range(0, 4).Select(i => space.Inspect(a + (ulong)i * Page).Frame).ToArray();
        Assert.Equal(4, frames.Distinct().Count());
        Assert.All(frames, f => Assert.InRange(f, 0, Pool.Capacity - 1));
    }

    [Fact]
    public void WriteThenRead_RoundTripsEveryType_UpToThePageEnd()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        var triple = new Triple(-5, 77, 0xAB);
        var guid = Guid.NewGuid();

        space.Write(a, (byte)0xFE);
        space.Write(a + 2, (short)-1234);
        space.Write(a + 8, long.MinValue + 3);
        space.Write(a + 16, 3.25);
        space.Write(a + 32, guid);
        space.Write(a + Page - 13, triple);
        space.Write(a + Page - 4 - 13, 0x01020304);

        Assert.Equal((byte)0xFE, space.Read<byte>(a));
        Assert.Equal((short)-1234, space.Read<short>(a + 2));
        Assert.Equal(long.MinValue + 3, space.Read<long>(a + 8));
        Assert.Equal(3.25, space.Read<double>(a + 16));
        Assert.Equal(guid, space.Read<Guid>(a + 32));
        Assert.Equal(triple, space.Read<Triple>(a + Page - 13));
        Assert.Equal(0x01020304, space.Read<int>(a + Page - 4 - 13));
        Assert.Equal(0, space.Read<byte>(a + 1));
    }

    [Fact]
    public void Write_ChangesOnlyItsOwnBytes()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        Fill(space, a, 1, 0x77);

        space.Write(a + 10, 0);

        var bytes = ReadPages(space, a);
        AssertAllBytes(0, bytes.AsSpan(10, 4));
        AssertAllBytes(0x77, bytes.AsSpan(0, 10));
        AssertAllBytes(0x77, bytes.AsSpan(14));
    }

    [Fact]
    public void SpanWriteAndRead_AcrossPages_RoundTrip()
    {
        var space = NewSpace();
        var a = space.Map(4 * Page, Protection.ReadWrite);
        var data = new byte[(int)(3 * Page) - 100];
        new Random(1234).NextBytes(data);
        var start = a + 50;

        space.Write(start, data);

        var back = new byte[data.Length];
        space.Read(start, back);
        Assert.Equal(data, back);
        var all = ReadPages(space, a, 4);
        AssertAllBytes(0, all.AsSpan(0, 50));
        AssertAllBytes(0, all.AsSpan(50 + data.Length));
        for (ulong i = 0; i < 3; i++)
            Assert.Equal(PageState.Present, space.Inspect(a + i * Page).State);
        Assert.True(space.Inspect(a + 2 * Page).Dirty);
    }

    [Fact]
    public void SpanRead_OfUntouchedPages_ReturnsZeros()
    {
        var space = NewSpace();
        var a = space.Map(3 * Page, Protection.ReadWrite);
        var bytes = new byte[(int)(3 * Page)];
        Array.Fill(bytes, (byte)0xCC);

        space.Read(a, bytes);

        AssertAllBytes(0, bytes);
    }

    [Fact]
    public void AtomicAdd_ReturnsTheNewValue_LikeInterlockedAdd()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);

        Assert.Equal(5, space.AtomicAdd(a + 12, 5));
        Assert.Equal(8, space.AtomicAdd(a + 12, 3));
        Assert.Equal(-2, space.AtomicAdd(a + 12, -10));
        Assert.Equal(-2, space.Read<int>(a + 12));
        Assert.Equal(int.MinValue, space.AtomicAdd(a + Page - 4, int.MinValue));
        Assert.Equal(int.MaxValue, space.AtomicAdd(a + Page - 4, -1)); // wraps, as Interlocked.Add does
    }

    [Fact]
    public void AtomicAdd_OnUntouchedPage_FaultsInForWrite()
    {
        var space = NewSpace();
        var a = space.Map(Page, Protection.ReadWrite);
        var free = Pool.FreePages;

        Assert.Equal(1, space.AtomicAdd(a, 1));

        Assert.Equal(free - 1, Pool.FreePages);
        var info = space.Inspect(a);
        Assert.True(info.Dirty);
        Assert.True(info.SoftDirty);
    }

    [Fact]
    public void FreedFrames_NeverLeakIntoANewMapping()
    {
        var pool = CreatePool(4);
        var first = NewSpace(pool);
        var a = first.Map(4 * Page, Protection.ReadWrite);
        Fill(first, a, 4, 0xAB);
        DisposeSpace(first);

        var second = NewSpace(pool);
        var b = second.Map(4 * Page, Protection.ReadWrite);
        for (ulong i = 0; i < 4; i++)
            Assert.Equal(0L, second.Read<long>(b + i * Page + 8)); // fault in by a read: no write clears it
        AssertAllBytes(0, ReadPages(second, b, 4));
        Assert.Equal(0, pool.FreePages);
    }

    [Fact]
    public void DiscardedAndUnmappedFrames_ComeBackZeroed_InTheSameSpace()
    {
        var pool = CreatePool(2);
        var space = NewSpace(pool);
        var a = space.Map(2 * Page, Protection.ReadWrite);
        Fill(space, a, 2, 0xEE);

        space.Unmap(a + Page, Page);
        space.Discard(a, Page);
        var b = space.Map(Page, Protection.ReadWrite);

        AssertAllBytes(0, ReadPages(space, a));
        AssertAllBytes(0, ReadPages(space, b));
        Assert.Equal(0, pool.FreePages);
    }
}
