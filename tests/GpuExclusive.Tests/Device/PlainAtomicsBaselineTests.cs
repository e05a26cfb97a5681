namespace GpuExclusive.Tests.Device;

/// <summary>
/// The plain-atomics baselines the benchmarks measure the engine against (docs/benchmarks.md): each run applies every
/// op once, on a target in device memory or in host-mapped memory, and bad indices are refused before anything runs.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class PlainAtomicsBaselineTests(CpuAcceleratorFixture fixture) : IClassFixture<CpuAcceleratorFixture>
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Run_AddsOneAtEveryIndex_PerRun(bool hostMapped)
    {
        // Spread over 1024 ints and contended on int 7 alike.
        var indices = Enumerable.Range(0, 20_000).Select(i => i % 3 == 0 ? 7 : i % 1024).ToArray();
        using var baseline = new GpuExclusive.Devices.PlainAtomicsBaseline(fixture.Device, indices, 1024, hostMapped);

        baseline.Run();
        baseline.Run();

        var expected = new int[1024];
        foreach (var index in indices)
        {
            expected[index] += 2;
        }

        Assert.Equal(expected, baseline.ReadTarget());
        Assert.Equal(hostMapped, baseline.HostMapped);
    }

    [Fact]
    public void Create_WithAnIndexOutsideTheTarget_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new GpuExclusive.Devices.PlainAtomicsBaseline(fixture.Device, [0, 1024], 1024, hostMapped: false));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GpuExclusive.Devices.PlainAtomicsBaseline(fixture.Device, [-1], 1024, hostMapped: true));
    }
}
