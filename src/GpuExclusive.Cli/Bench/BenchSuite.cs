using GpuExclusive.Workloads;

namespace GpuExclusive.Cli.Bench;

/// <summary>
/// Every measurement of <c>gpux bench</c>. Each group measures the engine and its baseline in the same process, one
/// after the other, with <see cref="Sampler"/>; a row's ratio is formed from the two medians. What is measured — each
/// operation, its baseline, their setup — is defined once, in GpuExclusive.Workloads, and measured the same way by
/// the BenchmarkDotNet suite (bench/GpuExclusive.Bench); this class only times it and forms the rows.
/// </summary>
internal sealed class BenchSuite : IDisposable
{
    private static readonly (string Name, string Description)[] GroupList =
    [
        ("cpu", "random single-int Read/Write through the engine vs a raw pointer"),
        ("span", "1 MiB span copy through the engine vs Buffer.MemoryCopy"),
        ("grant", "MakeExclusive over 4096 pages vs mprotect over 4096 pages"),
        ("revoke-idle", "CPU touch of a device-exclusive page (device idle) vs a Linux minor fault"),
        ("revoke-running", "CPU touch of a device-exclusive page while a kernel runs: on other pages, and on pages the running batch uses"),
        ("atomics", "device atomics through the engine vs the same kernel without hazard words on raw memory vs CPU Interlocked; a batch under a CPU reader vs undisturbed"),
        ("pingpong", "CPU<->device round trips on 1..N pages, and two devices, vs Linux minor faults"),
        ("scale", "grant and fork cost per page as the populated size grows"),
        ("metadata", "metadata bytes per 4 KiB page"),
    ];

    // Touches per timed batch in the revocation and minor-fault rows. A batch is timed as a whole, as BenchmarkDotNet
    // does (OperationsPerInvoke): a touch timed alone would carry two timer reads (~20 ns on a VM), a quarter of an idle
    // revocation but a few percent of a minor fault, and bend the ratio. The latency charts time each touch alone.
    private const int TouchesPerBatch = IdleRevocationWorkload.Pages;

    private readonly BenchOptions _options;
    private readonly Func<ExclusiveDevice> _openDevice;
    private readonly Action<string> _progress;
    private readonly PlotData _plots = new();
    private readonly PlotData _warmUpPlots = new();
    private ExclusiveDevice? _device;
    private ExclusiveDevice? _second;
    private (Stats Batched, Stats Single)? _minorFault;
    private bool _warmingUp;
    private static volatile int s_sink;

    public BenchSuite(BenchOptions options, Func<ExclusiveDevice> openDevice, Action<string> progress)
    {
        _options = options;
        _openDevice = openDevice;
        _progress = progress;
    }

    public static IReadOnlyList<(string Name, string Description)> Groups => GroupList;

    /// <summary>Figures for the charts (those of a warm-up pass go to a scratch set and are dropped).</summary>
    public PlotData Plots => _warmingUp ? _warmUpPlots : _plots;

    /// <summary>The first device opened (null if no group needed one).</summary>
    public ExclusiveDevice? OpenedDevice => _device;

    private double Budget => _warmingUp ? Math.Min(0.02, _options.SecondsPerMeasurement) : _options.SecondsPerMeasurement;

    private int[] ScaleSizes => _warmingUp ? [1024] : _options.ScaleSizes;

    private int[] PingPongSizes => _warmingUp ? [1] : _options.PingPongSizes;

    private int[] InUseBatchSizes => _warmingUp ? [1 << 16] : _options.InUseBatchSizes;

    private int ReaderBatchOps => _warmingUp ? Math.Min(1 << 16, _options.ReaderBatchOps) : _options.ReaderBatchOps;

    private ExclusiveDevice Device => _device ??= _openDevice();

    private ExclusiveDevice SecondDevice => _second ??= _openDevice();

    /// <summary>
    /// Passes over <paramref name="group"/> at a tiny bound and the smallest sizes, results dropped: the engine's
    /// code paths reach tier-1 JIT before anything is measured, so the first measurement is not charged for tiering.
    /// </summary>
    public void WarmUp(string group)
    {
        _warmingUp = true;
        try
        {
            // Tiered JIT: call counting starts ~100 ms after the last new tier-0 method, then 30 calls promote a
            // method and a background thread compiles it. Two passes with pauses get the hot paths to tier 1.
            _ = Run(group).ToList();
            Thread.Sleep(150);
            _ = Run(group).ToList();
            Thread.Sleep(100);
        }
        finally
        {
            _warmingUp = false;
            _warmUpPlots.Clear();
        }
    }

    public IEnumerable<BenchRow> Run(string group) => group switch
    {
        "cpu" => CpuAccess(),
        "span" => SpanCopy(),
        "grant" => Grant(),
        "revoke-idle" => RevokeIdle(),
        "revoke-running" => RevokeRunning(),
        "atomics" => Atomics(),
        "pingpong" => PingPong(),
        "scale" => Scale(),
        "metadata" => Metadata(),
        _ => throw new ArgumentOutOfRangeException(nameof(group), group, "unknown group"),
    };

    public void Dispose()
    {
        _second?.Dispose();
        _device?.Dispose();
    }

    private Stats Measure(string what, Action<List<double>> sample, Action? measuring = null) => Stats.From(MeasureSamples(what, sample, measuring));

    private List<double> MeasureSamples(string what, Action<List<double>> sample, Action? measuring = null)
    {
        if (!_warmingUp)
            _progress(what);
        return Sampler.Run(Budget, sample, measuring);
    }

    /// <summary>
    /// Single events that a call may or may not produce (touches that found a page held), with half the budget: eight such
    /// rows per run. At least <see cref="MinInUseSamples"/> of them where the engine lets a page stay away from the device
    /// for long (see <see cref="Sampler.Run"/> for how much longer it may take).
    /// </summary>
    private List<double> MeasureEvents(string what, Action<List<double>> sample, Action measuring)
    {
        if (!_warmingUp)
            _progress(what);
        return Sampler.Run(Budget / 2, sample, measuring, _warmingUp ? 0 : MinInUseSamples);
    }

    private const int MinInUseSamples = 20;

    /// <summary>Pairs of batches (undisturbed, with a CPU reader) the reader rows time at least.</summary>
    internal const int MinReaderPairs = 2;

    /// <summary>Samples for a latency chart only (no row): a quarter of the budget.</summary>
    private List<double> MeasureLatencies(string what, Action<List<double>> sample)
    {
        if (!_warmingUp)
            _progress(what);
        return Sampler.Run(Budget / 4, sample);
    }

    /// <summary>Times <paramref name="operation"/> alone, <paramref name="operations"/> operations per call, one sample a call.</summary>
    private Stats Time(string what, Action operation, int operations) => Measure(what, s => s.Add(Sampler.Time(operation, operations)));

    // ---- CPU access, span copy ----

    private IEnumerable<BenchRow> CpuAccess()
    {
        const int ops = CpuRandomAccessWorkload.Ops;
        using var workload = new CpuRandomAccessWorkload();
        Stats rawRead = Time("cpu: raw random read", () => s_sink = workload.RawRandomRead(), ops);
        Stats engineRead = Time("cpu: engine random read", () => s_sink = workload.EngineRandomRead(), ops);
        Stats rawWrite = Time("cpu: raw random write", workload.RawRandomWrite, ops);
        Stats engineWrite = Time("cpu: engine random write", workload.EngineRandomWrite, ops);
        return
        [
            new BenchRow("cpu", "cpu-random-read", "ns/access", "Read<int>", engineRead, "raw int*", rawRead, RatioKind.Time,
                new Target(TargetKind.RatioAtMost, 3, "≤ 3×")),
            new BenchRow("cpu", "cpu-random-write", "ns/access", "Write<int>", engineWrite, "raw int*", rawWrite, RatioKind.Time, null,
                "DESIGN §7 names reads; writes reported alongside"),
        ];
    }

    private IEnumerable<BenchRow> SpanCopy()
    {
        using var workload = new SpanCopyWorkload();
        Stats copyRead = Time("span: Buffer.MemoryCopy read", workload.MemoryCopyRead, 1);
        Stats engineRead = Time("span: engine Read(span)", workload.EngineRead, 1);
        Stats copyWrite = Time("span: Buffer.MemoryCopy write", workload.MemoryCopyWrite, 1);
        Stats engineWrite = Time("span: engine Write(span)", workload.EngineWrite, 1);
        var target = new Target(TargetKind.RatioAtLeast, 0.5, "≥ 0.5 speed");
        return
        [
            new BenchRow("span", "span-read-1MiB", "ns/MiB", "Read(span)", engineRead, "MemoryCopy", copyRead, RatioKind.Speed, target),
            new BenchRow("span", "span-write-1MiB", "ns/MiB", "Write(span)", engineWrite, "MemoryCopy", copyWrite, RatioKind.Speed, target),
        ];
    }

    // ---- grant ----

    private IEnumerable<BenchRow> Grant()
    {
        var (engine, linux) = MeasureGrant(4096, "grant");
        return
        [
            new BenchRow("grant", "grant-4096", "ns/page", "MakeExclusive", engine, "mprotect", linux, RatioKind.Time,
                new Target(TargetKind.RatioAtMost, 2, "≤ 2×")),
        ];
    }

    private (Stats Engine, Stats Linux) MeasureGrant(int pages, string label)
    {
        using var workload = new GrantWorkload(Device, pages);
        Stats engine = Measure($"{label}: MakeExclusive {pages} pages", s =>
        {
            workload.RestorePages(); // present and writable again: revokes the last grant
            s.Add(Sampler.Time(() => workload.MakeExclusive(), pages));
        });
        Stats linux = Measure($"{label}: mprotect {pages} pages", s =>
        {
            workload.MakeLinuxWritable();
            s.Add(Sampler.Time(() => workload.LinuxMprotect(), pages));
        });
        return (engine, linux);
    }

    // ---- revocation ----

    /// <summary>
    /// First touches of fresh anonymous pages, measured once per run: ns per touch over batches (the idle revocation's
    /// baseline, timed alike), and single touches each timed alone (the baseline of rows whose engine side is timed one
    /// operation at a time: ping-pong; also the latency chart).
    /// </summary>
    private (Stats Batched, Stats Single) MinorFault()
    {
        if (!_warmingUp && _minorFault is { } cached)
            return cached;
        var linux = new MinorFaultWorkload(TouchesPerBatch);
        List<double> batched = MeasureSamples("linux: minor fault (first touch of fresh anonymous pages)", s =>
        {
            linux.MapFresh();
            s.Add(Sampler.Time(() => s_sink = linux.ReadEach(), TouchesPerBatch));
            linux.Unmap();
        });
        List<double> single = MeasureLatencies("linux: minor fault, each touch timed alone", s =>
        {
            linux.MapFresh();
            s_sink = linux.TimeEachRead(s);
            linux.Unmap();
        });
        Plots.MinorFaultNs.AddRange(single);
        var figures = (Stats.From(batched), Stats.From(single));
        if (!_warmingUp)
            _minorFault = figures; // every row that compares with a minor fault uses the same figures
        return figures;
    }

    private IEnumerable<BenchRow> RevokeIdle()
    {
        using var workload = new IdleRevocationWorkload(Device);
        List<double> samples = MeasureSamples("revoke-idle: CPU read of device-exclusive pages", s =>
        {
            workload.Grant();
            s.Add(Sampler.Time(() => s_sink = workload.RevokeEach(), TouchesPerBatch));
        });
        Plots.RevokeIdleNs.AddRange(MeasureLatencies("revoke-idle: each touch timed alone (for the chart)", s =>
        {
            workload.Grant();
            s_sink = workload.TimeEachRevocation(s);
        }));
        Stats minor = MinorFault().Batched;
        return
        [
            new BenchRow("revoke-idle", "revoke-idle", "ns/revocation", "CPU touch → restored", Stats.From(samples), "minor fault", minor, RatioKind.Time,
                new Target(TargetKind.RatioAtMost, 0.1, "≤ 0.1×"), $"batches of {TouchesPerBatch} touches, timed whole (the chart times each alone)"),
        ];
    }

    private IEnumerable<BenchRow> RevokeRunning()
    {
        var (otherPage, idle) = RevokeOtherPage();
        return [otherPage, .. RevokeInUse(idle)];
    }

    /// <summary>The old row: a page the kernel does not use. Returns it, and its device-idle side (the in-use rows' baseline).</summary>
    private (BenchRow Row, Stats Idle) RevokeOtherPage()
    {
        using var workload = new OtherPageRevocationWorkload(Device);
        var random = new Random();
        void Revoke(List<double> s)
        {
            workload.GrantInsideBatch(random);
            s.Add(Sampler.Time(() => s_sink = workload.Revoke(), 1));
        }

        Stats idle = Measure("revoke-running: single revocation, device idle", Revoke);
        workload.StartBusy();
        List<double> running;
        try
        {
            running = MeasureSamples("revoke-running: single revocation of a page the kernel does not use, kernel running on other pages", Revoke);
        }
        finally
        {
            workload.StopBusy();
        }

        Plots.RevokeRunningNs.AddRange(running);
        bool gpu = Device.Kind == AcceleratorKind.Cuda;
        var target = gpu
            ? new Target(TargetKind.EngineMedianAtMost, 50_000, "median ≤ 50 µs (GPU)")
            : new Target(TargetKind.EngineMedianAtMost, 1_000_000, "median ≤ 1 ms (CPU acc.)");
        var row = new BenchRow("revoke-running", "revoke-running-other-page", "ns/revocation", "kernel on other pages", Stats.From(running), "device idle", idle, RatioKind.Time, target,
            $"a page the kernel does not use; {workload.BusyBatches} background batches of {OtherPageRevocationWorkload.BusyOps} ops on 64 other pages; both sides single revocations, each timed alone");
        return (row, idle);
    }

    /// <summary>
    /// Revocations of a page the running batch uses: batches of 64k, 1M (and with --full 20M) adds over 1 and over 64
    /// pages, their pages granted before each run or faulted in by it; a toucher reads one at random moments, and the
    /// touches that found it device-held are the samples (see <see cref="InUseRevocationWorkload"/>).
    /// </summary>
    private List<BenchRow> RevokeInUse(Stats idle)
    {
        Target target = Device.Kind == AcceleratorKind.Cuda
            ? new Target(TargetKind.EngineMedianAtMost, 50_000, "median ≤ 50 µs (GPU)")
            : new Target(TargetKind.EngineMedianAndP99AtMost, 50_000, "median ≤ 50 µs, p99 ≤ 1 ms", 1_000_000);
        var rows = new List<BenchRow>();
        foreach (int ops in InUseBatchSizes)
        {
            foreach (int pages in (int[])[1, 64])
            {
                using var workload = new InUseRevocationWorkload(Device, ops, pages);
                foreach (bool granted in (bool[])[true, false])
                {
                    string how = granted ? "granted" : "faulted";
                    string name = $"revoke-running-in-use-{how}-{pages}p-{SizeName(ops)}";
                    workload.Start(granted);
                    List<double> samples;
                    try
                    {
                        samples = MeasureEvents($"revoke-running: touches of {pages} page(s) a batch of {SizeName(ops)} adds uses ({(granted ? "granted before each run" : "faulted in by each run")})", s =>
                        {
                            var (ns, foundHeld) = workload.TouchAtRandomMoment();
                            if (foundHeld)
                                s.Add(ns);
                        }, workload.ResetCounts);
                    }
                    finally
                    {
                        workload.Stop();
                    }

                    if (samples.Count == 0 && _warmingUp)
                        continue; // a warmup pass of a few milliseconds: the code ran, which is all it is for
                    if (samples.Count == 0)
                        throw new InvalidOperationException($"{name}: none of {workload.Touches} touches found its page device-held inside a run ({workload.RunsCompleted} runs)");
                    Stats stats = Stats.From(samples);
                    var (faults, replays) = workload.FaultsAndReplays;
                    double batches = workload.RunsCompleted;
                    rows.Add(new BenchRow("revoke-running", name, "ns/revocation", $"batch using it ({how})", stats, "device idle", idle, RatioKind.Time, target,
                        $"touches at random moments (0-{InUseRevocationWorkload.MaxPauseMicroseconds} µs apart) of pages a running batch of {ops} adds over {pages} page(s) uses, " +
                        $"{(granted ? "granted by MakeExclusive before each run" : "faulted in by each run itself")}; samples: the touches that found the page device-held")
                    {
                        Figures =
                        [
                            new("p99", stats.P99, IsNanoseconds: true),
                            new("max", stats.Max, IsNanoseconds: true),
                            new("touches", workload.Touches),
                            new("touchesFoundHeld", workload.FoundHeld),
                            new("batches", batches),
                            new("batchMedianNs", workload.MedianRunNanoseconds, IsNanoseconds: true),
                            new("deviceFaultsPerBatch", faults / batches),
                            new("replaysPerBatch", replays / batches),
                        ],
                    });
                }
            }
        }

        return rows;
    }

    // ---- device atomics ----

    private IEnumerable<BenchRow> Atomics()
    {
        const int ops = DeviceAtomicsWorkload.Ops;
        var rows = new List<BenchRow>();
        foreach (bool contended in (bool[])[false, true])
        {
            string kind = contended ? "contended" : "spread";
            using var workload = new DeviceAtomicsWorkload(Device, contended);
            Stats raw = Time($"atomics ({kind}): same kernel on raw memory", workload.RawKernel, ops);
            Stats engine = Time($"atomics ({kind}): engine Run", () => workload.Engine(), ops);
            Stats enginePrepared = Time($"atomics ({kind}): engine Run(prepared)", () => workload.EnginePrepared(), ops);
            Stats interlocked = Time($"atomics ({kind}): CPU Interlocked", () => s_sink = workload.CpuInterlocked(), ops);
            var target = new Target(TargetKind.RatioAtLeast, 0.8, "≥ 0.8 speed");
            rows.Add(new BenchRow("atomics", $"atomics-{kind}", "ns/op", "mirror.Run", engine, "raw kernel", raw, RatioKind.Speed, target,
                $"{ops} adds per batch"));
            rows.Add(new BenchRow("atomics", $"atomics-{kind}-prepared", "ns/op", "Run(prepared)", enginePrepared, "raw kernel", raw, RatioKind.Speed, target,
                "the same batch prepared once: no per-run copy of the ops, like the raw kernel's"));
            rows.Add(new BenchRow("atomics", $"atomics-{kind}-vs-cpu", "ns/op", "mirror.Run", engine, "Interlocked", interlocked, RatioKind.Speed, null,
                "CPU Interlocked.Add on the same counters"));
        }

        rows.AddRange(ReaderThroughput());
        return rows;
    }

    /// <summary>
    /// A batch of 2M adds over 1 and over 64 pages with a CPU reader reading its first page in a tight loop, ÷ undisturbed.
    /// The two run in pairs, at least two pairs and more while the budget lasts, without a warmup of their own (the warmup
    /// pass ran them on a small batch): under the reader one batch takes longer than the budget on this kind of machine.
    /// </summary>
    private IEnumerable<BenchRow> ReaderThroughput()
    {
        int ops = ReaderBatchOps;
        foreach (int pages in (int[])[1, 64])
        {
            using var workload = new ReaderThroughputWorkload(Device, pages, ops);
            var undisturbed = new List<double>();
            if (!_warmingUp)
                _progress($"atomics: batch of {SizeName(ops)} adds on {pages} page(s), undisturbed and with a CPU reader reading its page in a loop");
            List<double> withReader = Sampler.Run(Budget, s =>
            {
                undisturbed.Add(Sampler.Time(() => workload.RunUndisturbed(), ops));
                s.Add(Sampler.Time(() => workload.RunWithReader(), ops));
            }, workload.ResetCounts, minCalls: MinReaderPairs, warmUp: false);
            double batches = workload.ReaderBatches;
            yield return new BenchRow("atomics", $"atomics-cpu-reader-{pages}p-{SizeName(ops)}", "ns/op", "with CPU reader", Stats.From(withReader),
                "undisturbed", Stats.From(undisturbed), RatioKind.Time, new Target(TargetKind.RatioAtMost, 2, "≤ 2× slower"),
                $"a batch of {ops} adds over {pages} page(s) while a CPU thread reads its first page in a tight loop for the whole run, ÷ the same batch undisturbed (run in pairs)")
            {
                Figures =
                [
                    new("readerReadsPerBatch", workload.ReaderReads / batches),
                    new("batches", batches),
                    new("deviceFaultsPerBatch", workload.ReaderDeviceFaults / batches),
                    new("replaysPerBatch", workload.ReaderReplays / batches),
                ],
            };
        }
    }

    // ---- ping-pong ----

    private IEnumerable<BenchRow> PingPong()
    {
        Stats minor = MinorFault().Single; // a round trip is timed alone too
        var rows = new List<BenchRow>();
        foreach (int pages in PingPongSizes)
        {
            using var workload = new PingPongWorkload(Device, SecondDevice, pages);
            Stats cpuDevice = Time($"pingpong: CPU<->device, {pages} page(s)", () => workload.CpuDeviceRoundTrip(), 1);
            Stats twoDevices = Time($"pingpong: two devices, {pages} page(s)", () => workload.TwoDevicesRoundTrip(), 1);
            Stats faults = minor.Scaled(pages);
            string faultLabel = pages == 1 ? "minor fault" : $"{pages} minor faults";
            rows.Add(new BenchRow("pingpong", $"pingpong-{pages}", "ns/round trip", "CPU↔device", cpuDevice, faultLabel, faults, RatioKind.Time,
                pages == 1 ? new Target(TargetKind.RatioAtMost, 10, "≤ 10×") : null));
            rows.Add(new BenchRow("pingpong", $"pingpong-two-devices-{pages}", "ns/round trip", "device↔device", twoDevices, faultLabel, faults, RatioKind.Time, null));
            Plots.PingPong.Add((pages, 1e9 / cpuDevice.Median, 1e9 / twoDevices.Median));
        }

        return rows;
    }

    // ---- scale ----

    private IEnumerable<BenchRow> Scale()
    {
        var rows = new List<BenchRow>();
        foreach (int pages in ScaleSizes)
        {
            string size = SizeName(pages);
            var (fork, floor) = MeasureFork(pages, size);
            var (grant, mprotect) = MeasureGrant(pages, $"scale {size}");
            rows.Add(new BenchRow("scale", $"grant-{size}", "ns/page", "MakeExclusive", grant, "mprotect", mprotect, RatioKind.Time, null));
            rows.Add(new BenchRow("scale", $"fork-{size}", "ns/page", "Fork+Dispose", fork, "PTE-copy floor", floor, RatioKind.Time, null,
                "floor: write-protect + copy PTE array, take and drop a reference per frame"));
            Plots.Scale.Add((pages, grant.Median, mprotect.Median, fork.Median, floor.Median));
        }

        return rows;
    }

    private (Stats Fork, Stats Floor) MeasureFork(int pages, string size)
    {
        using var workload = new ForkWorkload(pages);
        Stats fork = Measure($"scale {size}: Fork + Dispose of {pages} populated pages", s =>
        {
            workload.MakeParentWritable(); // every PTE writable again, so each fork write-protects all of them
            s.Add(Sampler.Time(workload.ForkAndDispose, pages));
        });
        Stats floor = Time($"scale {size}: PTE-copy floor over {pages} pages", () => workload.CopyPageTableArray(), pages);
        return (fork, floor);
    }

    /// <summary>1024 → 1k, 65536 → 64k, 1048576 → 1M.</summary>
    private static string SizeName(int count) => count >= 1 << 20 ? $"{count >> 20}M" : $"{count >> 10}k";

    // ---- metadata ----

    private IEnumerable<BenchRow> Metadata()
    {
        _progress("metadata: bytes per page");
        double declared = MetadataReport.DeclaredBytesPerPage;
        var engine = new Stats(declared, declared, declared, declared, 1);
        const double linux = MetadataReport.LinuxBytesPerPage;
        var baseline = new Stats(linux, linux, linux, linux, 1);
        return
        [
            new BenchRow("metadata", "metadata-per-page", "B/page", "frame meta + PTE", engine, "Linux page+PTE", baseline, RatioKind.Time,
                new Target(TargetKind.EngineMedianAtMost, 32, "≤ 32 B/page"),
                $"PagePool.MetadataBytesPerFrame {PagePool.MetadataBytesPerFrame} B + 8 B PTE"),
        ];
    }
}
