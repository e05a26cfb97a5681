using BenchmarkDotNet.Attributes;

namespace GpuExclusive.Bench;

/// <summary>
/// Revocation latency of one page — a CPU read of a device-exclusive page until its PTE is restored — with the device
/// idle, and with a kernel running on other pages of the same space (the revocation must stop it: the invalidation
/// callback raises the stop flag and waits for the launch to return). DESIGN §7: median ≤ 1 ms on the CPU
/// accelerator, ≤ 50 µs on a GPU. One revocation per invocation (the page is granted again in the iteration setup).
/// </summary>
[BenchmarkCategory("RevocationLatency")]
[FullyOptimized]
public class RevocationWhileRunningBenchmarks
{
    private const int BusyPages = 64;

    private PagePool _pool = null!;
    private AddressSpace _space = null!;
    private ExclusiveDevice _device = null!;
    private DeviceMirror _mirror = null!;
    private ulong _page;
    private AtomicOp[] _busyOps = null!;
    private Thread? _busy;
    private volatile bool _stop;

    [Params(false, true)]
    public bool KernelRunning { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(BusyPages + 64);
        _space = new AddressSpace(_pool);
        _page = _space.Map(PagePool.PageSize, Protection.ReadWrite);
        var busy = _space.Map(BusyPages * PagePool.PageSize, Protection.ReadWrite);
        _device = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _mirror = _device.Mirror(_space);
        _busyOps = [.. Enumerable.Range(0, 1 << 16).Select(i => new AtomicOp(busy + ((ulong)(i % BusyPages) * PagePool.PageSize), AtomicKind.Add, 1))];
        if (KernelRunning)
        {
            _busy = new Thread(() =>
            {
                while (!_stop)
                {
                    _mirror.Run(_busyOps);
                }
            }) { IsBackground = true, Name = "device batches" };
            _busy.Start();
        }
    }

    [IterationSetup]
    public void Grant() => _mirror.MakeExclusive(_page, PagePool.PageSize);

    [Benchmark]
    public int Revoke() => _space.Read<int>(_page);

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _busy?.Join();
        _mirror.Dispose();
        _device.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
