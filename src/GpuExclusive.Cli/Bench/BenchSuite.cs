using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GpuExclusive.Devices;
using GpuExclusive.Kernels;
using GpuExclusive.Native;

namespace GpuExclusive.Cli.Bench;

/// <summary>What <c>gpux bench</c> measures and how long: the quick-mode twin of bench/GpuExclusive.Bench.</summary>
internal sealed record BenchOptions(double SecondsPerMeasurement, bool Full, IReadOnlyList<string> Filters)
{
    public int[] ScaleSizes => Full ? [1024, 4096, 16384, 65536, 262144, 1048576] : [1024, 4096, 16384, 65536];

    public int[] PingPongSizes => Full ? [1, 4, 16, 64, 256] : [1, 4, 16, 64];
}

/// <summary>Raw figures kept for the charts.</summary>
internal sealed class PlotData
{
    public List<double> RevokeIdleNs { get; } = [];
    public List<double> RevokeRunningNs { get; } = [];
    public List<double> MinorFaultNs { get; } = [];
    public List<(int Pages, double RoundTripsPerSecond, double TwoDevicesPerSecond)> PingPong { get; } = [];
    public List<(int Pages, double GrantNsPerPage, double MprotectNsPerPage, double ForkNsPerPage, double ForkFloorNsPerPage)> Scale { get; } = [];

    public void Clear()
    {
        RevokeIdleNs.Clear();
        RevokeRunningNs.Clear();
        MinorFaultNs.Clear();
        PingPong.Clear();
        Scale.Clear();
    }
}

/// <summary>
/// Every measurement of <c>gpux bench</c>. Each group measures the engine and its baseline in the same process, one
/// after the other, with <see cref="Sampler"/>; a row's ratio is formed from the two medians.
/// </summary>
internal sealed unsafe class BenchSuite : IDisposable
{
    private const int PageSize = PagePool.PageSize;
    private const int MadvNoHugePage = 15;

    private static readonly (string Name, string Description)[] GroupList =
    [
        ("cpu", "random single-int Read/Write through the engine vs a raw pointer"),
        ("span", "1 MiB span copy through the engine vs Buffer.MemoryCopy"),
        ("grant", "MakeExclusive over 4096 pages vs mprotect over 4096 pages"),
        ("revoke-idle", "CPU touch of a device-exclusive page (device idle) vs a Linux minor fault"),
        ("revoke-running", "CPU touch of a device-exclusive page while a kernel runs on other pages"),
        ("atomics", "device atomics through the engine vs the same kernel without hazard words on raw memory vs CPU Interlocked"),
        ("pingpong", "CPU<->device round trips on 1..N pages, and two devices, vs Linux minor faults"),
        ("scale", "grant and fork cost per page as the populated size grows"),
        ("metadata", "metadata bytes per 4 KiB page"),
    ];

    private readonly BenchOptions _options;
    private readonly Func<ExclusiveDevice> _openDevice;
    private readonly Action<string> _progress;
    private ExclusiveDevice? _device;
    private ExclusiveDevice? _second;
    private (Stats Batched, Stats Single)? _minorFault;
    private static volatile int s_sink;

    public BenchSuite(BenchOptions options, Func<ExclusiveDevice> openDevice, Action<string> progress)
    {
        _options = options;
        _openDevice = openDevice;
        _progress = progress;
    }

    public static IReadOnlyList<(string Name, string Description)> Groups => GroupList;

    private readonly PlotData _plots = new();
    private readonly PlotData _warmUpPlots = new();

    /// <summary>Figures for the charts (those of a warm-up pass go to a scratch set and are dropped).</summary>
    public PlotData Plots => _warmingUp ? _warmUpPlots : _plots;

    /// <summary>The first device opened (null if no group needed one).</summary>
    public ExclusiveDevice? OpenedDevice => _device;

    private bool _warmingUp;

    private double Budget => _warmingUp ? Math.Min(0.02, _options.SecondsPerMeasurement) : _options.SecondsPerMeasurement;

    private int[] ScaleSizes => _warmingUp ? [1024] : _options.ScaleSizes;

    private int[] PingPongSizes => _warmingUp ? [1] : _options.PingPongSizes;

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

    private ExclusiveDevice Device => _device ??= _openDevice();

    private ExclusiveDevice SecondDevice => _second ??= _openDevice();

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

    private Stats Measure(string what, Action<List<double>> sample)
    {
        if (!_warmingUp)
            _progress(what);
        return Stats.From(Sampler.Run(Budget, sample));
    }

    private List<double> MeasureSamples(string what, Action<List<double>> sample)
    {
        if (!_warmingUp)
            _progress(what);
        return Sampler.Run(Budget, sample);
    }

    /// <summary>Samples for a latency chart only (no row): a quarter of the budget.</summary>
    private List<double> MeasureLatencies(string what, Action<List<double>> sample)
    {
        if (!_warmingUp)
            _progress(what);
        return Sampler.Run(Budget / 4, sample);
    }

    private static nint MapAnonymous(nuint bytes, bool noHugePages)
    {
        nint address = LinuxMemory.Mmap(0, bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous, -1, 0);
        if (address == LinuxMemory.MapFailed)
            throw new InvalidOperationException($"mmap of {bytes} bytes failed, errno {Marshal.GetLastPInvokeError()}");
        if (noHugePages)
            _ = LinuxMemory.Madvise(address, bytes, MadvNoHugePage); // best effort: a kernel without THP refuses it
        return address;
    }

    private static void RequireLinux(string what)
    {
        if (!LinuxMemory.IsSupported)
            throw new PlatformNotSupportedException($"{what}: the baseline is Linux itself (mmap/mprotect)");
    }

    // ---- CPU access ----

    private IEnumerable<BenchRow> CpuAccess()
    {
        const int pages = 1024;
        const int ints = pages * PageSize / sizeof(int);
        const int ops = 4096;
        using var pool = new PagePool(pages);
        using var space = new AddressSpace(pool);
        ulong at = space.Map((ulong)pages * PageSize, Protection.ReadWrite);
        int* raw = (int*)NativeMemory.AlignedAlloc((nuint)pages * PageSize, PageSize);
        try
        {
            for (int i = 0; i < ints; i++)
            {
                space.Write(at + ((ulong)i * sizeof(int)), i);
                raw[i] = i;
            }

            var rng = new Random(12345);
            int[] random = new int[ops];
            for (int i = 0; i < ops; i++)
                random[i] = rng.Next(ints);

            // Each timed body copies what it captured into locals first, as the BenchmarkDotNet class does: captured
            // variables live in a closure object, and the engine's volatile reads would make the JIT reload them per access.
            Stats rawRead = Measure("cpu: raw random read", s => s.Add(Sampler.Time(() =>
            {
                int* r = raw;
                int[] indices = random;
                int sum = 0;
                foreach (int index in indices)
                    sum += r[index];
                s_sink = sum;
            }, ops)));
            Stats engineRead = Measure("cpu: engine random read", s => s.Add(Sampler.Time(() =>
            {
                AddressSpace engine = space;
                ulong start = at;
                int[] indices = random;
                int sum = 0;
                foreach (int index in indices)
                    sum += engine.Read<int>(start + ((ulong)index << 2));
                s_sink = sum;
            }, ops)));
            Stats rawWrite = Measure("cpu: raw random write", s => s.Add(Sampler.Time(() =>
            {
                int* r = raw;
                int[] indices = random;
                foreach (int index in indices)
                    r[index] = index;
            }, ops)));
            Stats engineWrite = Measure("cpu: engine random write", s => s.Add(Sampler.Time(() =>
            {
                AddressSpace engine = space;
                ulong start = at;
                int[] indices = random;
                foreach (int index in indices)
                    engine.Write(start + ((ulong)index << 2), index);
            }, ops)));

            var target = new Target(TargetKind.RatioAtMost, 3, "≤ 3×");
            return
            [
                new BenchRow("cpu", "cpu-random-read", "ns/access", "Read<int>", engineRead, "raw int*", rawRead, RatioKind.Time, target),
                new BenchRow("cpu", "cpu-random-write", "ns/access", "Write<int>", engineWrite, "raw int*", rawWrite, RatioKind.Time, null,
                    "DESIGN §7 names reads; writes reported alongside"),
            ];
        }
        finally
        {
            NativeMemory.AlignedFree(raw);
        }
    }

    // ---- span copy ----

    private IEnumerable<BenchRow> SpanCopy()
    {
        const int pages = 256;
        const int bytes = pages * PageSize;
        using var pool = new PagePool(pages);
        using var space = new AddressSpace(pool);
        ulong at = space.Map(bytes, Protection.ReadWrite);
        byte* raw = (byte*)NativeMemory.AlignedAlloc(bytes, PageSize);
        byte[] buffer = GC.AllocateArray<byte>(bytes, pinned: true);
        try
        {
            Random.Shared.NextBytes(buffer);
            space.Write(at, buffer);
            buffer.CopyTo(new Span<byte>(raw, bytes));
            byte* pinned = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));

            Stats copyRead = Measure("span: Buffer.MemoryCopy read", s => s.Add(Sampler.Time(() => Buffer.MemoryCopy(raw, pinned, bytes, bytes), 1)));
            Stats engineRead = Measure("span: engine Read(span)", s => s.Add(Sampler.Time(() => space.Read(at, buffer), 1)));
            Stats copyWrite = Measure("span: Buffer.MemoryCopy write", s => s.Add(Sampler.Time(() => Buffer.MemoryCopy(pinned, raw, bytes, bytes), 1)));
            Stats engineWrite = Measure("span: engine Write(span)", s => s.Add(Sampler.Time(() => space.Write(at, buffer), 1)));

            var target = new Target(TargetKind.RatioAtLeast, 0.5, "≥ 0.5 speed");
            return
            [
                new BenchRow("span", "span-read-1MiB", "ns/MiB", "Read(span)", engineRead, "MemoryCopy", copyRead, RatioKind.Speed, target),
                new BenchRow("span", "span-write-1MiB", "ns/MiB", "Write(span)", engineWrite, "MemoryCopy", copyWrite, RatioKind.Speed, target),
            ];
        }
        finally
        {
            NativeMemory.AlignedFree(raw);
        }
    }

    // ---- grant ----

    private IEnumerable<BenchRow> Grant()
    {
        RequireLinux("grant");
        var (engine, linux) = MeasureGrant(4096, "grant");
        return
        [
            new BenchRow("grant", "grant-4096", "ns/page", "MakeExclusive", engine, "mprotect", linux, RatioKind.Time,
                new Target(TargetKind.RatioAtMost, 2, "≤ 2×")),
        ];
    }

    private (Stats Engine, Stats Linux) MeasureGrant(int pages, string label)
    {
        ulong bytes = (ulong)pages * PageSize;
        using var pool = new PagePool(pages + 64, lockMemory: pages <= 65536);
        using var space = new AddressSpace(pool);
        ulong at = space.Map(bytes, Protection.ReadWrite);
        using DeviceMirror mirror = Device.Mirror(space);
        Stats engine = Measure($"{label}: MakeExclusive {pages} pages", s =>
        {
            for (ulong page = 0; page < (ulong)pages; page++)
                space.Write(at + (page * PageSize), (int)page); // present and writable again: revokes the last grant
            s.Add(Sampler.Time(() => mirror.MakeExclusive(at, bytes), pages));
        });
        Stats linux = MeasureMprotect(pages, label);
        return (engine, linux);
    }

    private Stats MeasureMprotect(int pages, string label)
    {
        nuint bytes = (nuint)pages * PageSize;
        nint linux = MapAnonymous(bytes, noHugePages: false);
        try
        {
            new Span<byte>((void*)linux, checked((int)Math.Min(bytes, int.MaxValue))).Fill(1);
            for (nuint offset = int.MaxValue; offset < bytes; offset += PageSize)
                ((byte*)linux)[offset] = 1;
            return Measure($"{label}: mprotect {pages} pages", s =>
            {
                _ = LinuxMemory.Mprotect(linux, bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite);
                s.Add(Sampler.Time(() => LinuxMemory.Mprotect(linux, bytes, LinuxMemory.ProtRead), pages));
            });
        }
        finally
        {
            _ = LinuxMemory.Munmap(linux, bytes);
        }
    }

    // ---- revocation ----

    // Touches per timed batch in the revocation and minor-fault rows. A batch is timed as a whole, as BenchmarkDotNet
    // does (OperationsPerInvoke): a touch timed alone would carry two timer reads (~20 ns on a VM), a quarter of an idle
    // revocation but a few percent of a minor fault, and bend the ratio. The latency charts time each touch alone.
    private const int TouchesPerBatch = 256;

    /// <summary>
    /// First touches of fresh anonymous pages (MADV_NOHUGEPAGE), measured once per run: ns per touch over batches (the
    /// idle revocation's baseline, timed alike), and single touches each timed alone (the baseline of rows whose engine
    /// side is timed one operation at a time: ping-pong; also the latency chart).
    /// </summary>
    private (Stats Batched, Stats Single) MinorFault()
    {
        if (!_warmingUp && _minorFault is { } cached)
            return cached;
        RequireLinux("minor fault");
        List<double> batched = MeasureSamples("linux: minor fault (first touch of fresh anonymous pages)", s => TouchFreshAnonymous(s, timeEachTouch: false));
        List<double> single = MeasureLatencies("linux: minor fault, each touch timed alone", s => TouchFreshAnonymous(s, timeEachTouch: true));
        Plots.MinorFaultNs.AddRange(single);
        var figures = (Stats.From(batched), Stats.From(single));
        if (!_warmingUp)
            _minorFault = figures; // every row that compares with a minor fault uses the same figures
        return figures;
    }

    private void TouchFreshAnonymous(List<double> samples, bool timeEachTouch)
    {
        const nuint bytes = (nuint)TouchesPerBatch * PageSize;
        nint linux = MapAnonymous(bytes, noHugePages: true);
        s_sink = TimeTouches(new RawTouch((byte*)linux), samples, timeEachTouch);
        _ = LinuxMemory.Munmap(linux, bytes);
    }

    private IEnumerable<BenchRow> RevokeIdle()
    {
        const ulong bytes = (ulong)TouchesPerBatch * PageSize;
        using var pool = new PagePool(TouchesPerBatch + 64);
        using var space = new AddressSpace(pool);
        ulong at = space.Map(bytes, Protection.ReadWrite);
        using DeviceMirror mirror = Device.Mirror(space);
        List<double> samples = MeasureSamples("revoke-idle: CPU read of device-exclusive pages", s => TouchExclusive(s, timeEachTouch: false));
        Plots.RevokeIdleNs.AddRange(MeasureLatencies("revoke-idle: each touch timed alone (for the chart)", s => TouchExclusive(s, timeEachTouch: true)));
        Stats minor = MinorFault().Batched;
        return
        [
            new BenchRow("revoke-idle", "revoke-idle", "ns/revocation", "CPU touch → restored", Stats.From(samples), "minor fault", minor, RatioKind.Time,
                new Target(TargetKind.RatioAtMost, 0.1, "≤ 0.1×"), $"batches of {TouchesPerBatch} touches, timed whole (the chart times each alone)"),
        ];

        void TouchExclusive(List<double> s, bool timeEachTouch)
        {
            _ = mirror.MakeExclusive(at, bytes);
            s_sink = TimeTouches(new EngineTouch(space, at), s, timeEachTouch);
        }
    }

    /// <summary>
    /// Touches pages 0..<see cref="TouchesPerBatch"/> - 1 and adds ns per touch: one sample for the batch timed whole, or
    /// one per touch timed alone. Generic over a struct, so the touch is inlined on both sides of a ratio alike.
    /// </summary>
    private static int TimeTouches<TTouch>(TTouch touch, List<double> samples, bool timeEachTouch)
        where TTouch : struct, IPageTouch
    {
        int sum = 0;
        if (timeEachTouch)
        {
            for (int page = 0; page < TouchesPerBatch; page++)
            {
                long start = System.Diagnostics.Stopwatch.GetTimestamp();
                sum += touch.Touch(page);
                long stop = System.Diagnostics.Stopwatch.GetTimestamp();
                samples.Add(Sampler.Nanoseconds(stop - start));
            }
        }
        else
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            for (int page = 0; page < TouchesPerBatch; page++)
            {
                sum += touch.Touch(page);
            }

            long stop = System.Diagnostics.Stopwatch.GetTimestamp();
            samples.Add(Sampler.Nanoseconds(stop - start) / TouchesPerBatch);
        }

        return sum;
    }

    private interface IPageTouch
    {
        int Touch(int page);
    }

    /// <summary>A read of the first byte of a page of raw memory.</summary>
    private readonly struct RawTouch(byte* pages) : IPageTouch
    {
        public int Touch(int page) => pages[page * PageSize];
    }

    /// <summary>A read of the first int of a page through the engine.</summary>
    private readonly struct EngineTouch(AddressSpace space, ulong pages) : IPageTouch
    {
        public int Touch(int page) => space.Read<int>(pages + ((ulong)page * PageSize));
    }

    private IEnumerable<BenchRow> RevokeRunning()
    {
        const int busyPages = 64;
        using var pool = new PagePool(busyPages + 64);
        using var space = new AddressSpace(pool);
        ulong page = space.Map(PageSize, Protection.ReadWrite);
        ulong busy = space.Map(busyPages * PageSize, Protection.ReadWrite);
        using DeviceMirror mirror = Device.Mirror(space);
        AtomicOp[] busyOps = [.. Enumerable.Range(0, 1 << 16).Select(i => new AtomicOp(busy + ((ulong)(i % busyPages) * PageSize), AtomicKind.Add, 1))];

        bool busyRunning = false;
        long batches = 0;
        long batchTicks = 0;
        void Revoke(List<double> s)
        {
            _ = mirror.MakeExclusive(page, PageSize);
            if (Volatile.Read(ref busyRunning))
            {
                // The grant may have waited for the busy kernel; touch only once a new batch is under way, so the
                // revocation really has a running kernel to stop.
                long seen = Interlocked.Read(ref batches);
                var wait = System.Diagnostics.Stopwatch.StartNew();
                while (Interlocked.Read(ref batches) == seen && wait.ElapsedMilliseconds < 1000)
                    Thread.SpinWait(64);
                // ...and land somewhere inside it, not at its launch: a random point in the first half of a batch.
                long delay = (long)(Random.Shared.NextDouble() * batchTicks / 2);
                long until = System.Diagnostics.Stopwatch.GetTimestamp() + delay;
                while (System.Diagnostics.Stopwatch.GetTimestamp() < until)
                    Thread.SpinWait(16);
            }

            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            s_sink = space.Read<int>(page);
            long stop = System.Diagnostics.Stopwatch.GetTimestamp();
            s.Add(Sampler.Nanoseconds(stop - start));
        }

        Stats idle = Measure("revoke-running: single revocation, device idle", Revoke);
        bool stop = false;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                while (!Volatile.Read(ref stop))
                {
                    _ = mirror.Run(busyOps);
                    Interlocked.Increment(ref batches);
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        { IsBackground = true, Name = "bench device batches" };
        thread.Start();
        List<double> running;
        try
        {
            while (Interlocked.Read(ref batches) == 0 && failure is null && thread.IsAlive)
                Thread.Sleep(1); // the first batch compiles and launches the kernel
            var batchClock = System.Diagnostics.Stopwatch.StartNew();
            long first = Interlocked.Read(ref batches);
            while (Interlocked.Read(ref batches) < first + 3 && failure is null && batchClock.ElapsedMilliseconds < 5000)
                Thread.Sleep(1);
            batchTicks = batchClock.ElapsedTicks / 3; // how long one busy batch takes
            Volatile.Write(ref busyRunning, true);
            running = MeasureSamples("revoke-running: single revocation, kernel running on other pages", Revoke);
        }
        finally
        {
            Volatile.Write(ref stop, true);
            thread.Join();
        }

        if (failure is not null)
            throw new InvalidOperationException($"the background kernel failed: {failure.Message}", failure);
        Plots.RevokeRunningNs.AddRange(running);
        bool gpu = Device.Kind == AcceleratorKind.Cuda;
        var target = gpu
            ? new Target(TargetKind.EngineMedianAtMost, 50_000, "median ≤ 50 µs (GPU)")
            : new Target(TargetKind.EngineMedianAtMost, 1_000_000, "median ≤ 1 ms (CPU acc.)");
        return
        [
            new BenchRow("revoke-running", "revoke-running", "ns/revocation", "kernel running", Stats.From(running), "device idle", idle, RatioKind.Time, target,
                $"{Interlocked.Read(ref batches)} background batches of 65536 ops; both sides single revocations, each timed alone"),
        ];
    }

    // ---- device atomics ----

    private IEnumerable<BenchRow> Atomics()
    {
        const int ops = 65536;
        const int pages = 256;
        using var pool = new PagePool(pages + 64);
        using var space = new AddressSpace(pool);
        ulong at = space.Map((ulong)pages * PageSize, Protection.ReadWrite);
        ExclusiveDevice device = Device;
        using DeviceMirror mirror = device.Mirror(space);
        _ = mirror.MakeExclusive(at, (ulong)pages * PageSize);
        using var rawBatch = new DeviceBatch(device, ops);
        using HostMappedArray<long> rawTable = device.AllocateShared<long>(pages);
        using HostMappedArray<int> rawMemory = device.AllocateShared<int>((long)pages * PageSize / sizeof(int));
        for (int slot = 0; slot < pages; slot++)
            rawTable[slot] = DevicePte.Make(slot, DevicePte.Atomic);
        int* cpu = (int*)NativeMemory.AlignedAlloc((nuint)pages * PageSize, PageSize);
        var rows = new List<BenchRow>();
        try
        {
            foreach (bool contended in (bool[])[false, true])
            {
                string kind = contended ? "contended" : "spread";
                AtomicOp[] engineOps = new AtomicOp[ops];
                for (int i = 0; i < ops; i++)
                {
                    int p = contended ? 0 : i % pages;
                    engineOps[i] = new AtomicOp(at + ((ulong)p * PageSize), AtomicKind.Add, 1);
                    rawBatch.Ops[i] = new DeviceOp { Slot = p, Code = OpCode.Add, Operand = 1 };
                }

                Stats raw = Measure($"atomics ({kind}): same kernel on raw memory", s => s.Add(Sampler.Time(() =>
                {
                    rawBatch.States.AsSpan(ops).Clear();
                    device.LaunchRaw(rawBatch, rawTable, rawMemory.Binding);
                }, ops)));
                Stats engine = Measure($"atomics ({kind}): engine Run", s => s.Add(Sampler.Time(() =>
                {
                    BatchResult result = mirror.Run(engineOps);
                    if (result.Completed != ops)
                        throw new InvalidOperationException($"engine batch completed {result.Completed} of {ops} ops ({result})");
                }, ops)));
                using PreparedBatch prepared = mirror.Prepare(engineOps);
                Stats enginePrepared = Measure($"atomics ({kind}): engine Run(prepared)", s => s.Add(Sampler.Time(() =>
                {
                    BatchResult result = mirror.Run(prepared);
                    if (result.Completed != ops)
                        throw new InvalidOperationException($"prepared batch completed {result.Completed} of {ops} ops ({result})");
                }, ops)));
                Stats interlocked = Measure($"atomics ({kind}): CPU Interlocked", s => s.Add(Sampler.Time(() =>
                {
                    int last = 0;
                    for (int i = 0; i < ops; i++)
                        last = Interlocked.Add(ref cpu[(contended ? 0 : i % pages) * (PageSize / sizeof(int))], 1);
                    s_sink = last;
                }, ops)));

                rows.Add(new BenchRow("atomics", $"atomics-{kind}", "ns/op", "mirror.Run", engine, "raw kernel", raw, RatioKind.Speed,
                    new Target(TargetKind.RatioAtLeast, 0.8, "≥ 0.8 speed"), "65536 adds per batch"));
                rows.Add(new BenchRow("atomics", $"atomics-{kind}-prepared", "ns/op", "Run(prepared)", enginePrepared, "raw kernel", raw, RatioKind.Speed,
                    new Target(TargetKind.RatioAtLeast, 0.8, "≥ 0.8 speed"), "the same batch prepared once: no per-run copy of the ops, like the raw kernel's"));
                rows.Add(new BenchRow("atomics", $"atomics-{kind}-vs-cpu", "ns/op", "mirror.Run", engine, "Interlocked", interlocked, RatioKind.Speed, null,
                    "CPU Interlocked.Add on the same counters"));
            }

            return rows;
        }
        finally
        {
            NativeMemory.AlignedFree(cpu);
        }
    }

    // ---- ping-pong ----

    private IEnumerable<BenchRow> PingPong()
    {
        int maxPages = PingPongSizes.Max();
        using var pool = new PagePool(maxPages + 64);
        using var space = new AddressSpace(pool);
        ulong at = space.Map((ulong)maxPages * PageSize, Protection.ReadWrite);
        using DeviceMirror first = Device.Mirror(space);
        using DeviceMirror second = SecondDevice.Mirror(space);
        Stats minor = MinorFault().Single; // a round trip is timed alone too
        var rows = new List<BenchRow>();
        foreach (int pages in PingPongSizes)
        {
            AtomicOp[] ops = [.. Enumerable.Range(0, pages).Select(p => new AtomicOp(at + ((ulong)p * PageSize), AtomicKind.Add, 1))];
            Stats cpuDevice = Measure($"pingpong: CPU<->device, {pages} page(s)", s => s.Add(Sampler.Time(() =>
            {
                BatchResult result = first.Run(ops);
                if (result.Completed != pages)
                    throw new InvalidOperationException($"device batch completed {result.Completed} of {pages} ops ({result})");
                for (int p = 0; p < pages; p++)
                    space.AtomicAdd(at + ((ulong)p * PageSize), 1);
            }, 1)));
            Stats twoDevices = Measure($"pingpong: two devices, {pages} page(s)", s => s.Add(Sampler.Time(() =>
            {
                BatchResult a = first.Run(ops);
                BatchResult b = second.Run(ops);
                if (a.Completed != pages || b.Completed != pages)
                    throw new InvalidOperationException($"device batches completed {a.Completed} and {b.Completed} of {pages} ops");
            }, 1)));
            Stats faults = Scale(minor, pages);
            string faultLabel = pages == 1 ? "minor fault" : $"{pages} minor faults";
            rows.Add(new BenchRow("pingpong", $"pingpong-{pages}", "ns/round trip", "CPU↔device", cpuDevice, faultLabel, faults, RatioKind.Time,
                pages == 1 ? new Target(TargetKind.RatioAtMost, 10, "≤ 10×") : null));
            rows.Add(new BenchRow("pingpong", $"pingpong-two-devices-{pages}", "ns/round trip", "device↔device", twoDevices, faultLabel, faults, RatioKind.Time, null));
            Plots.PingPong.Add((pages, 1e9 / cpuDevice.Median, 1e9 / twoDevices.Median));
        }

        return rows;
    }

    private static Stats Scale(Stats stats, double factor) =>
        new(stats.Median * factor, stats.P90 * factor, stats.Min * factor, stats.Mean * factor, stats.Samples);

    // ---- scale ----

    private IEnumerable<BenchRow> Scale()
    {
        RequireLinux("scale");
        var rows = new List<BenchRow>();
        foreach (int pages in ScaleSizes)
        {
            string size = pages >= 1 << 20 ? $"{pages >> 20}M" : $"{pages >> 10}k";
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
        ulong bytes = (ulong)pages * PageSize;
        using var pool = new PagePool(pages + 256, lockMemory: pages <= 65536);
        using var parent = new AddressSpace(pool);
        ulong at = parent.Map(bytes, Protection.ReadWrite);
        void Touch()
        {
            for (int i = 0; i < pages; i++)
                parent.Write(at + ((ulong)i * PageSize), i);
        }

        Touch();
        Stats fork = Measure($"scale {size}: Fork + Dispose of {pages} populated pages", s =>
        {
            Touch(); // every PTE writable again, so each fork write-protects all of them
            s.Add(Sampler.Time(() => parent.Fork().Dispose(), pages));
        });

        const long presentBit = 1L << 0, writeBit = 1L << 1, youngBit = 1L << 5;
        const int frameShift = 12;
        long[] table = new long[pages];
        int[] refCounts = new int[pages];
        for (int i = 0; i < pages; i++)
        {
            table[i] = ((long)i << frameShift) | presentBit | writeBit | youngBit;
            refCounts[i] = 1;
        }

        Stats floor = Measure($"scale {size}: PTE-copy floor over {pages} pages", s => s.Add(Sampler.Time(() =>
        {
            long[] child = new long[pages];
            for (int i = 0; i < table.Length; i++)
            {
                long pte = table[i] & ~writeBit;
                table[i] = pte;
                child[i] = pte & ~youngBit;
                Interlocked.Increment(ref refCounts[(int)(pte >> frameShift)]);
            }

            for (int i = 0; i < child.Length; i++)
            {
                if (child[i] != 0)
                    Interlocked.Decrement(ref refCounts[(int)(child[i] >> frameShift)]);
            }
        }, pages)));
        return (fork, floor);
    }

    // ---- metadata ----

    private IEnumerable<BenchRow> Metadata()
    {
        _progress("metadata: bytes per page");
        double declared = PagePool.MetadataBytesPerFrame + sizeof(long);
        var engine = new Stats(declared, declared, declared, declared, 1);
        const double linux = 64 + 8; // struct page + one PTE
        var baseline = new Stats(linux, linux, linux, linux, 1);
        return
        [
            new BenchRow("metadata", "metadata-per-page", "B/page", "frame meta + PTE", engine, "Linux page+PTE", baseline, RatioKind.Time,
                new Target(TargetKind.EngineMedianAtMost, 32, "≤ 32 B/page"),
                $"PagePool.MetadataBytesPerFrame {PagePool.MetadataBytesPerFrame} B + 8 B PTE"),
        ];
    }
}
