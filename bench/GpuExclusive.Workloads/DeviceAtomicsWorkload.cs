using System.Runtime.InteropServices;
using GpuExclusive.Devices;
using GpuExclusive.Kernels;

namespace GpuExclusive.Workloads;

/// <summary>
/// Device atomics through the engine (<see cref="DeviceMirror.Run(ReadOnlySpan{AtomicOp}, Span{long})"/> on granted
/// pages, and the same ops as a <see cref="PreparedBatch"/>) against the very same ILGPU kernel launched on raw memory
/// with a ready-made device page table, and against CPU <see cref="Interlocked"/>: contended (every op on one counter)
/// or spread (one counter per page, round-robin). DESIGN §7: engine ÷ raw kernel ≥ 0.8.
/// </summary>
internal sealed unsafe class DeviceAtomicsWorkload : IDisposable
{
    internal const int Ops = 65536;
    internal const int Pages = 256;

    private readonly ExclusiveDevice _device;
    private readonly bool _contended;
    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private readonly DeviceMirror _mirror;
    private readonly AtomicOp[] _ops;
    private readonly PreparedBatch _prepared;
    private readonly DeviceBatch _rawBatch;
    private readonly HostMappedArray<long> _rawTable;
    private readonly HostMappedArray<int> _rawMemory;
    private readonly int* _cpuCounters;

    /// <param name="device">The device (the caller's: it outlives the workload).</param>
    /// <param name="contended">Every op on one counter, rather than one counter per page.</param>
    internal DeviceAtomicsWorkload(ExclusiveDevice device, bool contended)
    {
        _device = device;
        _contended = contended;
        _pool = new PagePool(Pages + 64);
        _space = new AddressSpace(_pool);
        var address = _space.Map((ulong)Pages * PagePool.PageSize, Protection.ReadWrite);
        _mirror = device.Mirror(_space);
        _mirror.MakeExclusive(address, (ulong)Pages * PagePool.PageSize);
        _ops = Batches.AddsOverPages(address, contended ? 1 : Pages, Ops);
        _prepared = _mirror.Prepare(_ops);

        // The raw baseline: the same kernel without hazard words (nothing can revoke a page under it), a table mapping
        // slot i to frame i with Atomic permission, no engine.
        _rawBatch = new DeviceBatch(device, Ops);
        _rawTable = device.AllocateShared<long>(Pages);
        _rawMemory = device.AllocateShared<int>((long)Pages * PagePool.PageSize / sizeof(int));
        for (var slot = 0; slot < Pages; slot++)
        {
            _rawTable[slot] = DevicePte.Make(slot, DevicePte.Atomic);
        }

        for (var i = 0; i < Ops; i++)
        {
            _rawBatch.Ops[i] = new DeviceOp { Slot = CounterPage(i), Code = OpCode.Add, Operand = 1 };
        }

        _cpuCounters = (int*)NativeMemory.AlignedAlloc((nuint)Pages * PagePool.PageSize, PagePool.PageSize);
    }

    /// <summary>The same kernel on raw memory.</summary>
    internal void RawKernel()
    {
        _rawBatch.States.AsSpan(Ops).Clear();
        _device.LaunchRaw(_rawBatch, _rawTable, _rawMemory.Binding);
    }

    internal BatchResult Engine() => Batches.RequireCompleted(_mirror.Run(_ops), Ops, "engine batch");

    /// <summary>
    /// The same ops prepared once (<see cref="DeviceMirror.Prepare"/>): each run skips the copy and translation of the
    /// ops, as the raw baseline, whose ops sit in device-visible memory from the setup on, does.
    /// </summary>
    internal BatchResult EnginePrepared() => Batches.RequireCompleted(_mirror.Run(_prepared), Ops, "prepared batch");

    internal int CpuInterlocked()
    {
        var last = 0;
        for (var i = 0; i < Ops; i++)
        {
            last = Interlocked.Add(ref _cpuCounters[CounterPage(i) * (PagePool.PageSize / sizeof(int))], 1);
        }

        return last;
    }

    private int CounterPage(int op) => _contended ? 0 : op % Pages;

    public void Dispose()
    {
        NativeMemory.AlignedFree(_cpuCounters);
        _prepared.Dispose();
        _rawBatch.Dispose();
        _rawTable.Dispose();
        _rawMemory.Dispose();
        _mirror.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
