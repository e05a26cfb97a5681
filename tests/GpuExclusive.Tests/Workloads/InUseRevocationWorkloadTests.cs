using GpuExclusive.Tests.Device;
using GpuExclusive.Workloads;

namespace GpuExclusive.Tests.Workloads;

/// <summary>
/// The half of <see cref="InUseRevocationWorkload"/> only the BenchmarkDotNet class uses: a prepared touch finds its page
/// device-held inside a run, so each timed read is an in-use revocation.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class InUseRevocationWorkloadTests(CpuAcceleratorFixture fixture) : IClassFixture<CpuAcceleratorFixture>
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void PreparedTouches_RevokeAPageTheRunningBatchHolds(bool granted)
    {
        using var workload = new InUseRevocationWorkload(fixture.Device, ops: 1 << 16, pages: 4);
        workload.Start(granted);
        try
        {
            for (var i = 0; i < 20; i++)
            {
                workload.PrepareHeldTouch();
                // Only the toucher takes pages from the device, so the page is still held when it is read.
                Assert.True(workload.PreparedPageHeld, $"touch {i}: the prepared page is not device-held");
                _ = workload.TouchPrepared();
                workload.CountPreparedTouch();
            }
        }
        finally
        {
            workload.Stop();
        }

        // A touch counts unless its run ended between the wait and the read (microseconds of a run of milliseconds).
        Assert.Equal(20, workload.Touches);
        Assert.InRange(workload.FoundHeld, 15, 20);
    }
}
