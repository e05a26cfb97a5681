using GpuExclusive.Paging;

namespace GpuExclusive.Tests.Engine;

/// <summary>The bit-packed PTE (<see cref="Pte"/>): every kind and flag round-trips, kinds never alias, and the layout matches its picture.</summary>
public sealed class PteTests
{
    private static readonly long[] Flags = [Pte.Write, Pte.Dirty, Pte.Young, Pte.SoftDirty, Pte.UffdWp, Pte.ProtNone];

    private static readonly long[] Frames = [0, 1, 2, 4095, 4096, 123_456_789, (1L << 39) + 17, (1L << 40) - 1];

    public static TheoryData<long> FrameData() => new(Frames);

    [Theory]
    [MemberData(nameof(FrameData))]
    public void Present_RoundTripsFrameAndEveryFlagCombination(long frame)
    {
        for (var mask = 0; mask < 1 << Flags.Length; mask++)
        {
            long flags = 0;
            for (var i = 0; i < Flags.Length; i++)
                if ((mask & (1 << i)) != 0)
                    flags |= Flags[i];

            var pte = Pte.MakePresent(frame, flags);

            Assert.True(Pte.IsPresent(pte));
            Assert.False(Pte.IsNone(pte));
            Assert.False(Pte.IsDeviceExclusive(pte));
            Assert.Equal(frame, Pte.Frame(pte));
            for (var i = 0; i < Flags.Length; i++)
                Assert.Equal((mask & (1 << i)) != 0, Pte.Has(pte, Flags[i]));
            var protNone = (flags & Pte.ProtNone) != 0;
            Assert.Equal(!protNone, Pte.IsReadable(pte));
            Assert.Equal(!protNone && (flags & Pte.Write) != 0, Pte.IsWritable(pte));
        }
    }

    [Theory]
    [MemberData(nameof(FrameData))]
    public void DeviceExclusive_RoundTripsFrameSoftDirtyAndUffdWp(long frame)
    {
        foreach (var softDirty in new[] { false, true })
        {
            foreach (var uffdWp in new[] { false, true })
            {
                var pte = Pte.MakeDeviceExclusive(frame, softDirty, uffdWp);

                Assert.True(Pte.IsDeviceExclusive(pte));
                Assert.False(Pte.IsPresent(pte));
                Assert.False(Pte.IsNone(pte));
                Assert.False(Pte.IsReadable(pte));
                Assert.False(Pte.IsWritable(pte));
                Assert.Equal(frame, Pte.Frame(pte));
                Assert.Equal(softDirty, Pte.Has(pte, Pte.SoftDirty));
                Assert.Equal(uffdWp, Pte.Has(pte, Pte.UffdWp));
                // The entry is clean and old, and carries no write permission (as Linux's make_device_exclusive leaves it).
                Assert.False(Pte.Has(pte, Pte.Write));
                Assert.False(Pte.Has(pte, Pte.Dirty));
                Assert.False(Pte.Has(pte, Pte.Young));
            }
        }
    }

    [Fact]
    public void None_IsOnlyTheZeroWord()
    {
        Assert.True(Pte.IsNone(Pte.None));
        Assert.False(Pte.IsPresent(Pte.None));
        Assert.False(Pte.IsDeviceExclusive(Pte.None));
        Assert.False(Pte.IsReadable(Pte.None));
        Assert.False(Pte.IsWritable(Pte.None));
        // Frame 0 with no flags is still a mapping, in both kinds.
        Assert.False(Pte.IsNone(Pte.MakePresent(0, 0)));
        Assert.False(Pte.IsNone(Pte.MakeDeviceExclusive(0, false, false)));
    }

    [Theory]
    [MemberData(nameof(FrameData))]
    public void PresentAndDeviceExclusive_OfTheSameFrame_NeverAlias(long frame)
    {
        var present = Pte.MakePresent(frame, Pte.SoftDirty | Pte.UffdWp);
        var exclusive = Pte.MakeDeviceExclusive(frame, softDirty: true, uffdWp: true);

        Assert.NotEqual(present, exclusive);
        Assert.NotEqual(Pte.IsPresent(present), Pte.IsPresent(exclusive));
    }

    [Fact]
    public void MakePresent_IgnoresFlagBitsThatWouldCorruptKindOrFrame()
    {
        var pte = Pte.MakePresent(5, Pte.Write | 0b10 | (0xFFL << 12));

        Assert.True(Pte.IsPresent(pte));
        Assert.Equal(5, Pte.Frame(pte));
        Assert.True(Pte.Has(pte, Pte.Write));
    }

    [Fact]
    public void Flags_AreDistinctSingleBits_BelowTheFrameField()
    {
        Assert.Equal(Flags.Length, Flags.Distinct().Count());
        Assert.All(Flags, f => Assert.Equal(1, long.PopCount(f)));
        Assert.All(Flags, f => Assert.True(f < 1L << 12, "flag overlaps the frame field"));
        Assert.All(Flags, f => Assert.True(f > 0b11, "flag overlaps the kind field"));
    }

    [Fact]
    public void Layout_MatchesThePicture_FrameInBits12To51()
    {
        Assert.Equal((1L << 12) | 0b01, Pte.MakePresent(1, 0));
        Assert.Equal((1L << 12) | 0b10, Pte.MakeDeviceExclusive(1, false, false));
        var top = Pte.MakePresent((1L << 40) - 1, 0);
        Assert.Equal(0, top >>> 52);
        Assert.Equal((1L << 40) - 1, Pte.Frame(top));
    }

    [Fact]
    public void Describe_NamesTheKindAndFrame()
    {
        Assert.Equal("none", Pte.Describe(Pte.None));
        Assert.Contains("present", Pte.Describe(Pte.MakePresent(7, Pte.Write)));
        Assert.Contains("frame=7", Pte.Describe(Pte.MakePresent(7, Pte.Write)));
        Assert.Contains("device-exclusive", Pte.Describe(Pte.MakeDeviceExclusive(9, true, false)));
    }
}
