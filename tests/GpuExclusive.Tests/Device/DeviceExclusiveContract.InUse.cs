using System.Diagnostics;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// A CPU touch never waits for a whole launch (docs/architecture.md, "device faults and the quantum"; issue 14): a
/// CPU thread reading a page the running batch is using sees the batch's intermediate values, none of its reads waits
/// anywhere near as long as the batch, and every op is still applied exactly once. The bounds asserted here are
/// generous — far below the batch's length, far above a quantum — so that scheduling noise on a small CI machine
/// cannot fail them; the tight figures are the benchmark's (<c>gpux bench --filter revoke-running</c>).
/// </summary>
public abstract partial class DeviceExclusiveContract
{
    /// <summary>A read of a page the batch uses may wait this long at most in 99 of 100 reads.</summary>
    private static readonly TimeSpan InUseReadP99Bound = TimeSpan.FromMilliseconds(50);

    [DeviceFact]
    public void CpuReads_OfTheOnlyPageOfALongBatch_GrantedBeforehand_SeeIntermediateValues_AndNeverWaitForTheLaunch()
    {
        var page = Space.Map(Page, Protection.ReadWrite);
        Assert.Equal(1, Mirror.MakeExclusive(page, Page));

        AssertReadsDuringBatch(Mirror, page, pages: 1, ops: 1_000_000);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void CpuReads_OfAPageTheBatchFaultedInItself_SeeIntermediateValues_AndNeverWaitForTheLaunch()
    {
        var page = Space.Map(Page, Protection.ReadWrite); // never granted: the batch's own device fault maps it

        AssertReadsDuringBatch(Mirror, page, pages: 1, ops: 1_000_000);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void CpuReads_OfOneOf64PagesOfALongBatch_SeeIntermediateValues_AndNeverWaitForTheLaunch()
    {
        var buffer = Space.Map(64 * Page, Protection.ReadWrite);

        AssertReadsDuringBatch(Mirror, buffer, pages: 64, ops: 1_000_000);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void CpuReads_OfThePageOfBatchesOnTheResidentKernel_SeeIntermediateValues_AndStayShort()
    {
        const int Ops = 65_536;
        const int Batches = 16;
        var device = Own(ExclusiveDevice.Open(new EngineSettings { Accelerator = Fixture.Kind, ResidentBatchOps = Ops }));
        var mirror = Own(MirrorOn(device, Space));
        var page = Space.Map(Page, Protection.ReadWrite);
        var ops = Enumerable.Repeat(new AtomicOp(page, AtomicKind.Add, 1), Ops).ToArray();
        var residentLaunches = device.Executor.ResidentLaunches;
        var done = 0;
        var reader = Start(() => ReadUntil(Space, page, () => Volatile.Read(ref done) != 0));

        var clock = Stopwatch.StartNew();
        try
        {
            for (var b = 0; b < Batches; b++)
            {
                Assert.Equal(Ops, Bounded("a batch on the resident kernel", () => mirror.Run(ops)).Completed);
            }
        }
        finally
        {
            Volatile.Write(ref done, 1);
        }

        clock.Stop();
        AssertFinishes(reader, "the CPU reader");
        var reads = reader.Result;
        Assert.True(device.Executor.ResidentLaunches > residentLaunches, "the batches did not run on the resident kernel");
        Assert.Equal(Ops * Batches, Space.Read<int>(page));
        AssertReadsBounded(reads, clock.Elapsed, Ops * Batches);
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void BackToBackBatches_WithACpuReader_TheReaderFinishesItsReads_AndEveryOpIsAppliedOnce()
    {
        const int Ops = 100_000; // one-shot launches, one after another
        const int Reads = 3000;
        var page = Space.Map(Page, Protection.ReadWrite);
        var counter = page + 64; // only the device adds here: its old values must be a permutation
        var ops = Enumerable.Range(0, Ops).Select(i => new AtomicOp(i % 2 == 0 ? page : counter, AtomicKind.Add, 1)).ToArray();
        var old = new long[Ops];
        var seen = new List<long>();
        var readerDone = 0;
        var device = Start(() =>
        {
            var batches = 0;
            while (Volatile.Read(ref readerDone) == 0 || batches < 2)
            {
                Assert.Equal(Ops, Mirror.Run(ops, old).Completed);
                for (var i = 1; i < Ops; i += 2)
                {
                    seen.Add(old[i]);
                }

                batches++;
            }

            return batches;
        });
        var reader = Start(() =>
        {
            try
            {
                var latencies = new List<double>(Reads);
                for (var r = 0; r < Reads; r++)
                {
                    var start = Stopwatch.GetTimestamp();
                    Space.Read<int>(page);
                    latencies.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                    Thread.SpinWait(200);
                }

                return latencies;
            }
            finally
            {
                Volatile.Write(ref readerDone, 1);
            }
        });

        AssertFinishes(reader, "a CPU reader during back-to-back batches");
        AssertFinishes(device, "back-to-back batches with a CPU reader");
        var batches = device.Result;
        var sorted = reader.Result.Order().ToArray();
        Assert.True(sorted[(int)(sorted.Length * 0.99)] < InUseReadP99Bound.TotalMilliseconds, $"99% of the reads took up to {sorted[(int)(sorted.Length * 0.99)]:0.0} ms (bound {InUseReadP99Bound.TotalMilliseconds} ms)");
        Assert.Equal(batches * (Ops / 2), Space.Read<int>(page));
        Assert.Equal(batches * (Ops / 2), Space.Read<int>(counter));
        Assert.Equal(Enumerable.Range(0, batches * (Ops / 2)).Select(v => (long)v), seen.Order());
        AssertCleanTeardown();
    }

    [DeviceFact]
    public void CpuTightLoop_OnTheBatchsOnlyPage_DoesNotStopTheBatch_AndEveryOpIsAppliedOnce()
    {
        const int Ops = 300_000;
        var page = Space.Map(Page, Protection.ReadWrite);
        var ops = Enumerable.Repeat(new AtomicOp(page, AtomicKind.Add, 1), Ops).ToArray();
        var old = new long[Ops];
        var stop = 0;
        var reader = Start(() =>
        {
            long reads = 0;
            while (Volatile.Read(ref stop) == 0)
            {
                Space.Read<int>(page);
                reads++;
            }

            return reads;
        });

        BatchResult result;
        try
        {
            result = Bounded("a batch whose only page a CPU reads in a tight loop", () => Mirror.Run(ops, old));
        }
        finally
        {
            Volatile.Write(ref stop, 1);
        }

        AssertFinishes(reader, "the tight-loop reader");
        Assert.Equal(Ops, result.Completed);
        Assert.Equal(Ops, Space.Read<int>(page));
        Assert.Equal(Enumerable.Range(0, Ops).Select(v => (long)v), old.Order());
        Assert.True(reader.Result > 0);
        AssertCleanTeardown();
    }

    /// <summary>
    /// Runs one batch of <paramref name="ops"/> adds over <paramref name="pages"/> pages from <paramref name="buffer"/>
    /// while a CPU thread reads the first page, and checks the reads: intermediate values seen, none near the batch's
    /// length, 99 % within <see cref="InUseReadP99Bound"/>; and the batch: every op applied once.
    /// </summary>
    private void AssertReadsDuringBatch(DeviceMirror mirror, ulong buffer, int pages, int ops)
    {
        var batch = Enumerable.Range(0, ops).Select(i => new AtomicOp(buffer + ((ulong)(i % pages) * Page), AtomicKind.Add, 1)).ToArray();
        var done = 0;
        var reader = Start(() => ReadUntil(Space, buffer, () => Volatile.Read(ref done) != 0));
        var clock = Stopwatch.StartNew();
        BatchResult result;
        try
        {
            result = Bounded("a long batch a CPU reads a page of", () => mirror.Run(batch));
        }
        finally
        {
            Volatile.Write(ref done, 1);
        }

        clock.Stop();
        AssertFinishes(reader, "the CPU reader");
        Assert.Equal(ops, result.Completed);
        var perPage = ops / pages;
        Assert.Equal(perPage, Space.Read<int>(buffer));
        AssertReadsBounded(reader.Result, clock.Elapsed, perPage);
    }

    /// <summary>The reads of <see cref="ReadUntil"/>: each value read, and how long each read took.</summary>
    private sealed record Reads(List<int> Values, List<double> Milliseconds);

    /// <summary>Reads the int at <paramref name="address"/> with a short pause between reads until <paramref name="stop"/>, timing each.</summary>
    private static Reads ReadUntil(AddressSpace space, ulong address, Func<bool> stop)
    {
        var reads = new Reads([], []);
        while (!stop())
        {
            var start = Stopwatch.GetTimestamp();
            var value = space.Read<int>(address);
            reads.Milliseconds.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            reads.Values.Add(value);
            Thread.SpinWait(500); // spread the reads over the launch
        }

        return reads;
    }

    /// <summary>Intermediate values were seen, 99 % of reads stayed within the bound, and none came near the batch's length.</summary>
    private static void AssertReadsBounded(Reads reads, TimeSpan batch, int total)
    {
        var intermediate = reads.Values.Where(v => v > 0 && v < total).Distinct().Count();
        Assert.True(intermediate >= 2, $"the CPU saw {intermediate} intermediate value(s) in {reads.Values.Count} reads of a {batch.TotalMilliseconds:0} ms batch: it waited for the launch");
        var sorted = reads.Milliseconds.Order().ToArray();
        var p99 = sorted[(int)(sorted.Length * 0.99)];
        var max = sorted[^1];
        Assert.True(p99 < InUseReadP99Bound.TotalMilliseconds, $"99% of {sorted.Length} reads took up to {p99:0.0} ms (bound {InUseReadP99Bound.TotalMilliseconds} ms)");
        Assert.True(max < batch.TotalMilliseconds / 3, $"a read took {max:0.0} ms of a {batch.TotalMilliseconds:0} ms batch");
    }
}
