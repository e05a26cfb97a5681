namespace GpuExclusive.Tests.Device;

/// <summary>
/// Owner filtering (docs/architecture.md, "the grant path" and "fork, unmap, protect, discard"): a device ignores the <c>Exclusive</c> invalidations its own grants cause, and a
/// second device's grant revokes the first.
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    [DeviceFact]
    public void MakeExclusive_BySameDevice_DoesNotInvalidateItsOwnMapping_SoRunNeedsNoDeviceFault()
    {
        var buffer = Space.Map(8 * Page, Protection.ReadWrite);

        Assert.Equal(4, Mirror.MakeExclusive(buffer, 4 * Page));
        Assert.Equal(8, Mirror.MakeExclusive(buffer, 8 * Page)); // overlapping re-grant: its events must not evict pages 0-3
        Assert.Equal(8, Mirror.CountExclusive(buffer, 8 * Page));

        var ops = Enumerable.Range(0, 8 * 64).Select(i => new AtomicOp(buffer + ((ulong)(i % 8) * Page), AtomicKind.Add, 1)).ToArray();
        var result = Mirror.Run(ops);

        Assert.Equal(new BatchResult(ops.Length, 0, 0, 0, 0), result);
        Assert.Equal(8, Mirror.CountExclusive(buffer, 8 * Page));
        for (var p = 0UL; p < 8; p++)
        {
            Assert.Equal(64, Space.Read<int>(buffer + (p * Page)));
        }

        AssertCleanTeardown();
    }

    [DeviceFact]
    public void MakeExclusive_BySecondDevice_RevokesTheFirst_AndTheFirstFaultsItBack()
    {
        var buffer = Space.Map(Page, Protection.ReadWrite);
        var second = Own(MirrorOn(Fixture.SecondDevice, Space));
        Assert.Equal(1, Mirror.MakeExclusive(buffer, Page));

        Assert.Equal(1, second.MakeExclusive(buffer, Page));

        Assert.Equal(0, Mirror.CountExclusive(buffer, Page));
        Assert.Equal(1, second.CountExclusive(buffer, Page));
        Assert.Equal(PageState.DeviceExclusive, Space.Inspect(buffer).State);
        AssertInvariants();

        var result = Mirror.Run([new AtomicOp(buffer, AtomicKind.Add, 3)]);

        Assert.Equal(1, result.Completed);
        Assert.True(result.DeviceFaults >= 1, $"the first device ran on a page it had lost without faulting: {result}");
        Assert.Equal(1, Mirror.CountExclusive(buffer, Page));
        Assert.Equal(0, second.CountExclusive(buffer, Page));
        Assert.Equal(3, Space.Read<int>(buffer));
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void TwoDevices_AlternatingBatchesOnOnePage_PingPong_EachBatchCompletes_AndTotalsAreExact()
    {
        const int Rounds = 40;
        const int OpsPerBatch = 64;
        var buffer = Space.Map(Page, Protection.ReadWrite);
        var mirrors = new[] { Mirror, Own(MirrorOn(Fixture.SecondDevice, Space)) };
        var turns = new[] { new SemaphoreSlim(1), new SemaphoreSlim(0) };
        var faultedBatches = new int[2];

        var players = Enumerable.Range(0, 2).Select(me => Start(() =>
        {
            // Shared counter at offset 0, this device's own counter at 4 + 4 * me.
            var ops = Enumerable.Range(0, OpsPerBatch)
                .Select(i => new AtomicOp(buffer + (i % 2 == 0 ? 0UL : 4UL + (4UL * (ulong)me)), AtomicKind.Add, 1))
                .ToArray();
            for (var round = 0; round < Rounds; round++)
            {
                if (!turns[me].Wait(Bound))
                {
                    return $"device {me} waited for its turn in round {round} in vain";
                }

                var result = mirrors[me].Run(ops);
                turns[1 - me].Release();
                if (result.Completed != OpsPerBatch)
                {
                    return $"device {me} round {round}: {result}";
                }

                if (result.DeviceFaults > 0)
                {
                    faultedBatches[me]++;
                }
            }

            return null;
        })).ToArray();

        foreach (var player in players)
        {
            AssertFinishes(player, "a ping-pong player");
            Assert.Null(player.Result);
        }

        Assert.Equal(Rounds * OpsPerBatch, Space.Read<int>(buffer));
        Assert.Equal(Rounds * OpsPerBatch / 2, Space.Read<int>(buffer + 4));
        Assert.Equal(Rounds * OpsPerBatch / 2, Space.Read<int>(buffer + 8));
        // Every batch finds the page granted to the other device (or, the very first, to nobody): the owners really alternated.
        Assert.Equal(new[] { Rounds, Rounds }, faultedBatches);
        AssertCleanTeardown();
    }
}
