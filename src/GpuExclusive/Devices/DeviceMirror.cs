using System.Diagnostics;
using GpuExclusive.Devices;
using GpuExclusive.Diagnostics;
using GpuExclusive.Kernels;
using GpuExclusive.Paging;
using ILGPU.Runtime;
using Microsoft.Extensions.Logging;

namespace GpuExclusive;

/// <summary>
/// A device's view of one address space (nouveau's SVM mirror, <c>lib/test_hmm</c>'s dmirror): a device page table
/// the kernels translate through, kept coherent with the CPU page table by an interval notifier.
/// </summary>
/// <remarks>
/// Atomics need an Atomic device PTE, obtained only by a grant (<see cref="MakeExclusive"/>, or a device fault during
/// <see cref="Run(ReadOnlySpan{AtomicOp}, Span{long})"/>); plain device reads and writes mirror the CPU PTE (<c>hmm_range_fault</c>) without exclusivity.
/// Every invalidation of the space except this device's own <see cref="NotifierEvent.Exclusive"/> events clears the
/// affected device PTEs and waits until no kernel thread is still using them (hazard words) before the callback
/// returns; the running kernel is not stopped. Thread-safe; several threads may <see cref="Run(ReadOnlySpan{AtomicOp}, Span{long})"/> at once (batches on
/// one device take turns).
/// </remarks>
public sealed partial class DeviceMirror : IDisposable
{
    private readonly ExclusiveDevice _device;
    private readonly MemoryBuffer _pool;
    private readonly ILogger _logger;
    // False for the null logger: the one-page invalidation (every revocation) then skips even the level check.
    private readonly bool _hasLogger;
    private readonly IDisposable _registration;

    // The mirror lock (the driver mutex of nouveau/test_hmm): guards the device page table (its slots, the entries the
    // host writes, its swap), the holds, and _disposed. Lock order (docs/architecture.md, "lock order"): mmap lock →
    // page lock → this lock. Never held while calling into the address space.
    private readonly object _lock = new();
    private readonly DevicePageTable _pageTable;
    private bool _disposed;

    internal DeviceMirror(ExclusiveDevice device, AddressSpace space, MemoryBuffer pool, PagePlacement placement)
    {
        _device = device;
        _placement = placement;
        _pool = pool;
        Space = space;
        _logger = EngineLoggers.Create<DeviceMirror>(device.LoggerFactory);
        _hasLogger = EngineLoggers.IsReal(_logger);
        _pageTable = new DevicePageTable(device, _lock);
        _registration = space.InsertIntervalNotifier(CreateNotifier(), 0, PageTable.AddressLimit);
        InvariantRegistry.Add(space, this);
    }

    /// <summary>The device this mirror belongs to.</summary>
    public ExclusiveDevice Device => _device;

    internal AddressSpace Space { get; }

    internal bool IsDisposed => Volatile.Read(ref _disposed);

    /// <summary>
    /// Stops using the space: the notifier is removed and the device page table freed. Pages stay device-exclusive until
    /// the CPU touches them (a device-resident page is written back to its frame first).
    /// </summary>
    public void Dispose()
    {
        // Quiesced first: no kernel may use a resident page while it is written back.
        _device.Executor.Quiesce();
        try
        {
            lock (_lock)
            {
                if (_disposed)
                {
                    return;
                }

                // Under the lock that every revocation takes: none can restore a CPU PTE before its page is back.
                WriteBackAllLocked();
                _disposed = true;
            }
        }
        finally
        {
            _device.Executor.Resume();
        }

        _registration.Dispose();
        InvariantRegistry.Remove(Space, this);
        _device.Executor.Quiesce();
        try
        {
            _device.Retire(_pageTable.Memory);
            lock (_spareBatches)
            {
                foreach (var batch in _spareBatches)
                {
                    _device.Retire(batch);
                }

                _spareBatches.Clear();
            }
        }
        finally
        {
            _device.Executor.Resume();
        }

        _device.Forget(this);
    }

    /// <summary>The device page table as the kernels see it; read only inside a launch (swaps happen while quiesced).</summary>
    internal SharedView<long> TableShared => _pageTable.Shared;

    internal MemoryBuffer PoolBuffer => _pool;

    /// <summary>
    /// Checks invariant 3 of docs/architecture.md for this mirror — every Atomic device PTE maps a frame whose CPU entry is
    /// device-exclusive — and that no hold outlived the batch run it served.
    /// </summary>
    internal void CollectViolations(List<string> violations)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _pageTable.AssertInvariants();
            var resident = 0;
            foreach (var (page, slot) in _pageTable)
            {
                var entry = _pageTable.Entry(slot);
                if (DevicePte.Permission(entry) != DevicePte.Atomic)
                {
                    continue;
                }

                // A resident entry names its slot in device memory, which knows the frame the page came from.
                var frame = DevicePte.IsResident(entry) ? _device.ResidentPages.FrameOf((int)DevicePte.Frame(entry)) : DevicePte.Frame(entry);
                resident += DevicePte.IsResident(entry) ? 1 : 0;
                var address = page << PagePool.PageShift;
                var pte = Space.PeekPte(address);
                if (!Pte.IsDeviceExclusive(pte) || Pte.Frame(pte) != frame)
                {
                    violations.Add($"device {_device.Name}: atomic device PTE at 0x{address:x} (frame {frame}) but the CPU PTE is {Pte.Describe(pte)} (#3)");
                }
            }

            if (resident != _residentSlots.Count)
            {
                violations.Add($"device {_device.Name}: {resident} resident device PTEs but {_residentSlots.Count} resident slots held (#3)");
            }

            CollectResidentViolationsLocked(violations);
            CollectHoldViolationsLocked(violations);
        }
    }

    private void ThrowIfDisposed()
    {
        _device.Executor.ThrowIfFailed();
        ObjectDisposedException.ThrowIf(_device.IsDisposed, _device);
        ObjectDisposedException.ThrowIf(Space.IsDisposed, Space);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
    }

    private void ThrowIfDisposedLocked()
    {
        AssertMirrorLockHeld();
        ThrowIfDisposed();
    }

    /// <summary>The precondition of every <c>…Locked</c> method of the mirror (DEBUG builds).</summary>
    [Conditional("DEBUG")]
    private void AssertMirrorLockHeld() => Debug.Assert(Monitor.IsEntered(_lock), "this method runs under the mirror lock (docs/architecture.md, \"lock order\")");
}
