using BenchmarkDotNet.Attributes;
using GpuExclusive.Devices;
using GpuExclusive.Kernels;

namespace GpuExclusive.Bench;

/// <summary>
/// Device atomics through the engine (<see cref="DeviceMirror.Run(ReadOnlySpan{AtomicOp}, Span{long})"/> on granted
/// pages, and the same ops as a <see cref="PreparedBatch"/>) against the very same ILGPU
/// kernel launched on raw memory with a ready-made device page table, and against CPU <see cref="Interlocked"/>:
/// contended (every op on one counter) and spread (one counter per page). DESIGN §7: engine ÷ raw kernel ≥ 0.8.
/// </summary>
[FullyOptimized]
public unsafe class DeviceAtomicsBenchmarks
{
    private const int Ops = 65536;
    private const int Pages = 256;

    private PagePool _pool = null!;
    private AddressSpace _space = null!;
    private ExclusiveDevice _device = null!;
    private DeviceMirror _mirror = null!;
    private AtomicOp[] _ops = null!;
    private PreparedBatch _prepared = null!;
    private DeviceBatch _rawBatch = null!;
    private HostMappedArray<long> _rawTable = null!;
    private HostMappedArray<int> _rawMemory = null!;
    private int* _cpuCounters;

    [Params(true, false)]
    public bool Contended { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(Pages + 64);
        _space = new AddressSpace(_pool);
        var address = _space.Map((ulong)Pages * PagePool.PageSize, Protection.ReadWrite);
        _device = ExclusiveDevice.Open(DeviceBenchmarkEnvironment.Accelerator);
        _mirror = _device.Mirror(_space);
        _mirror.MakeExclusive(address, (ulong)Pages * PagePool.PageSize);
        _ops = new AtomicOp[Ops];
        for (var i = 0; i < Ops; i++)
        {
            var page = Contended ? 0 : i % Pages;
            _ops[i] = new AtomicOp(address + ((ulong)page * PagePool.PageSize), AtomicKind.Add, 1);
        }

        _prepared = _mirror.Prepare(_ops);

        // The raw baseline: the same kernel without hazard words (nothing can revoke a page under it), a table mapping
        // slot i to frame i with Atomic permission, no engine.
        _rawBatch = new DeviceBatch(_device, Ops);
        _rawTable = _device.AllocateShared<long>(Pages);
        _rawMemory = _device.AllocateShared<int>((long)Pages * PagePool.PageSize / sizeof(int));
        for (var slot = 0; slot < Pages; slot++)
        {
            _rawTable[slot] = DevicePte.Make(slot, DevicePte.Atomic);
        }

        for (var i = 0; i < Ops; i++)
        {
            _rawBatch.Ops[i] = new DeviceOp { Slot = Contended ? 0 : i % Pages, Code = OpCode.Add, Operand = 1 };
        }

        _cpuCounters = (int*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)Pages * PagePool.PageSize, PagePool.PageSize);
    }

    [Benchmark(Baseline = true)]
    public void RawKernel()
    {
        _rawBatch.States.AsSpan(Ops).Clear();
        _device.LaunchRaw(_rawBatch, _rawTable, RawMemoryBuffer);
    }

    [Benchmark]
    public BatchResult Engine() => _mirror.Run(_ops);

    // The same ops prepared once (DeviceMirror.Prepare): each run skips the copy and translation of the 65536 ops,
    // as the raw baseline, whose ops sit in device-visible memory from the setup on, does.
    [Benchmark]
    public BatchResult EnginePrepared() => _mirror.Run(_prepared);

    [Benchmark]
    public int CpuInterlocked()
    {
        var last = 0;
        for (var i = 0; i < Ops; i++)
        {
            var page = Contended ? 0 : i % Pages;
            last = Interlocked.Add(ref _cpuCounters[page * (PagePool.PageSize / sizeof(int))], 1);
        }

        return last;
    }

    private ILGPU.Runtime.MemoryBuffer RawMemoryBuffer => _rawMemory.Binding;

    [GlobalCleanup]
    public void Cleanup()
    {
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_cpuCounters);
        _prepared.Dispose();
        _rawBatch.Dispose();
        _rawTable.Dispose();
        _rawMemory.Dispose();
        _mirror.Dispose();
        _device.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
