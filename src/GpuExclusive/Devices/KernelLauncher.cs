using GpuExclusive.Kernels;
using ILGPU;
using ILGPU.Runtime;
using BatchKernel = System.Action<ILGPU.KernelConfig, ILGPU.ArrayView<GpuExclusive.Kernels.DeviceOp>, GpuExclusive.Kernels.SharedView<int>, GpuExclusive.Kernels.SharedView<long>, GpuExclusive.Kernels.SharedView<long>, ILGPU.ArrayView<int>, ILGPU.ArrayView<long>, ILGPU.ArrayView<int>, ILGPU.ArrayView<long>, GpuExclusive.Kernels.SharedView<int>, GpuExclusive.Kernels.SharedView<int>, GpuExclusive.Kernels.SharedView<int>, GpuExclusive.Kernels.SharedView<int>>;

namespace GpuExclusive.Devices;

/// <summary>
/// Runs batches on one device's kernels (docs/architecture.md, "the batch path"): a persistent grid-stride launch per
/// large batch, or the resident kernel, rung through a doorbell in the control block, for small ones; and, while
/// either runs, the servicing of its device faults. Owns the memory the kernels share with the host: the control block,
/// the per-thread progress words, the hazard words (<see cref="Hazards"/>) and the resident kernel's staging batch.
/// When and whether a kernel may run is the <see cref="Executor"/>'s decision.
/// </summary>
internal sealed class KernelLauncher
{
    // Doorbell polls per microsecond of the resident kernel on the CPU accelerator (two atomic loads each), roughly:
    // it turns the idle time into a poll limit, since a kernel cannot read a clock.
    private const int CpuPollsPerMicrosecond = 50;

    private readonly ExclusiveDevice _device;
    private readonly Accelerator _accelerator;
    private readonly bool _onCpu;

    // Whether one-shot launches keep ops and old values in the device's own memory (EngineSettings.BookkeepingInDeviceMemory).
    private readonly bool _bookkeepingInDeviceMemory;
    private readonly BatchKernel _kernel;
    private readonly BatchKernel _serve;
    private BatchKernel? _rawKernel;
    private readonly KernelConfig _grid;
    private readonly KernelConfig _residentGrid;
    private readonly int _residentThreads;
    private readonly int _residentIdlePolls;

    // The control block (ControlBlock), and two words per kernel thread (AtomicBatchKernel.ProgressStride): a heartbeat
    // bumped at every stop poll — how the host tells a long batch from a stalled device — and the op (+1) the thread
    // awaits a grant for.
    private readonly HostMappedArray<int> _control;
    private readonly HostMappedArray<int> _progress;

    // The resident kernel's staging batch (null when it is turned off) and its last doorbell number; the doorbell is
    // only rung by a batch that holds the executor (one at a time).
    private readonly DeviceBatch? _residentBatch;
    private int _doorbell;

    internal KernelLauncher(
        ExclusiveDevice device,
        Accelerator accelerator,
        AcceleratorKind kind,
        EngineSettings settings,
        Action<DeviceFailedException> onFailure,
        Action afterLaunch)
    {
        _device = device;
        _accelerator = accelerator;
        _onCpu = kind == AcceleratorKind.Cpu;
        _bookkeepingInDeviceMemory = settings.BookkeepingInDeviceMemory ?? !_onCpu;
        _control = device.AllocateShared<int>(ControlBlock.Length);
        Executor = new DeviceExecutor(
            device.Name,
            SetStopRequested,
            TimeSpan.FromTicks(settings.StopPollIntervalMicroseconds * TimeSpan.TicksPerMicrosecond),
            // On the CPU accelerator the resident kernel counts its own idle polls and leaves; a GPU's waits for the host.
            _onCpu ? null : TimeSpan.FromTicks(settings.ResidentIdleMicroseconds * TimeSpan.TicksPerMicrosecond),
            TimeSpan.FromMilliseconds(settings.DeviceTimeoutMilliseconds),
            HeartbeatSum,
            onFailure,
            afterLaunch,
            sharesCpuResidency: _onCpu);

        // Kernels for a GPU access what they share with the host at system scope through inline PTX, which the CPU
        // accelerator cannot run; it gets the same kernels over Interlocked operations.
        _kernel = LoadBatchKernel(accelerator, _onCpu ? AtomicBatchKernel.ApplyOnCpuAccelerator : AtomicBatchKernel.Apply);
        _serve = LoadBatchKernel(accelerator, _onCpu ? AtomicBatchKernel.ServeOnCpuAccelerator : AtomicBatchKernel.Serve);

        // A persistent grid sized to the device (settings may override): every thread strides over the batch, so a stop
        // is seen within StopPollOps ops per thread, whatever the batch size. On the CPU accelerator, groups of one (one
        // kernel thread per multiprocessor, which leave a core to the host: see AcceleratorSelection).
        var groupSize = settings.KernelGroupSize > 0
            ? Math.Min(settings.KernelGroupSize, accelerator.MaxNumThreadsPerGroup)
            : _onCpu ? 1 : Math.Min(accelerator.MaxNumThreadsPerGroup, 256);
        var groups = settings.KernelGroups > 0
            ? settings.KernelGroups
            : Math.Max(1, accelerator.MaxNumThreadsPerMultiprocessor / groupSize) * accelerator.NumMultiprocessors;
        _grid = new KernelConfig(groups, groupSize);
        GridThreads = groups * groupSize;

        // The resident kernel is one group: one thread on the CPU accelerator (it polls a core while it waits, and more
        // threads would meet at a barrier per batch), a block of 128 on a GPU.
        _residentThreads = _onCpu ? 1 : Math.Min(128, accelerator.MaxNumThreadsPerGroup);
        _residentGrid = new KernelConfig(1, _residentThreads);

        // On the CPU accelerator the kernel leaves by itself after the idle time's worth of polls: a host timer is too
        // coarse (a millisecond) for a thread that holds a core while it polls. A GPU waits for the host's timer.
        _residentIdlePolls = _onCpu ? (int)Math.Min(int.MaxValue, (long)settings.ResidentIdleMicroseconds * CpuPollsPerMicrosecond) : 0;

        var threads = (long)Math.Max(GridThreads, _residentThreads);
        Hazards = new HazardWords(device.AllocateShared<int>(threads * AtomicBatchKernel.HazardStride), Executor);
        _progress = device.AllocateShared<int>(threads * AtomicBatchKernel.ProgressStride);
        if (settings.ResidentBatchOps > 0)
        {
            _residentBatch = new DeviceBatch(device, settings.ResidentBatchOps);
        }

        GroupSize = groupSize;
        Groups = groups;
    }

    /// <summary>When and whether a kernel may run: launches, the resident kernel, quiescing, the bounded waits.</summary>
    internal DeviceExecutor Executor { get; }

    /// <summary>The host's half of the hazard protocol.</summary>
    internal HazardWords Hazards { get; }

    /// <summary>Threads in the persistent kernel grid.</summary>
    internal int GridThreads { get; }

    /// <summary>Threads per group of the persistent grid.</summary>
    internal int GroupSize { get; }

    /// <summary>Groups in the persistent grid.</summary>
    internal int Groups { get; }

    /// <summary>
    /// Runs one launch of the atomic batch kernel (through the executor: one kernel at a time, stoppable), servicing the
    /// device faults it records while it runs (<see cref="DeviceMirror.ServiceLaunchFaults(LaunchFaults)"/>): a kernel thread that
    /// faults waits for the page instead of ending the launch.
    /// </summary>
    internal void LaunchBatch(DeviceBatch batch, DeviceMirror mirror)
    {
        if (_residentBatch is not null && batch.Count <= _residentBatch.Capacity)
        {
            RunOnResidentKernel(batch, mirror);
            return;
        }

        var faults = new LaunchFaults(batch, batch.States, batch.Faults, GridThreads);
        batch.Launch = faults;
        Executor.Launch(
            () =>
            {
                ObjectDisposedException.ThrowIf(_device.IsDisposed, _device);
                ObjectDisposedException.ThrowIf(mirror.IsDisposed, mirror);
                // Read the table inside the launch: it is only swapped while the executor is quiesced.
                LaunchOnce(_kernel, batch, mirror.TableShared, mirror.PoolBuffer, faults);
            },
            () => mirror.ServiceLaunchFaults(faults),
            // Before the service's first look at the ring, which comes as soon as the launch is handed over.
            prepare: () => ResetFaultRecords(batch));
        FinishLaunch(batch, faults);
    }

    /// <summary>
    /// Launches the batch kernel without hazard words (<see cref="AtomicBatchKernel.ApplyWithoutHazards"/>, compiled on
    /// first use) over <paramref name="memory"/> with a caller-built device page table: no mirror, no faults, no
    /// replays, nothing to revoke. The baseline that "device atomics through the engine" is measured against.
    /// </summary>
    internal void LaunchRaw(DeviceBatch batch, HostMappedArray<long> table, MemoryBuffer memory)
    {
        var raw = LazyInitializer.EnsureInitialized(
            ref _rawKernel,
            () => LoadBatchKernel(_accelerator, _onCpu ? AtomicBatchKernel.ApplyWithoutHazardsOnCpuAccelerator : AtomicBatchKernel.ApplyWithoutHazards));
        Executor.Launch(() => LaunchOnce(raw, batch, table.Shared(), memory, faults: null), prepare: () => ResetFaultRecords(batch));
    }

    /// <summary>One blocking launch of a batch kernel over the whole grid (on the launcher thread).</summary>
    private void LaunchOnce(BatchKernel kernel, DeviceBatch batch, SharedView<long> table, MemoryBuffer memory, LaunchFaults? faults)
    {
        // On the launcher thread: CUDA launches and synchronizes in the context current on the calling thread.
        _accelerator.Bind();
        var bytes = memory.AsRawArrayView();
        var count = batch.Count;
        Hazards.LaunchBegins();
        if (faults is not null)
        {
            faults.Running = true;
        }

        try
        {
            if (_bookkeepingInDeviceMemory)
            {
                LaunchWithBookkeepingInDeviceMemory(kernel, batch, table, bytes);
            }
            else
            {
                kernel(_grid, batch.Ops.View.SubView(0, count), batch.States.Shared(count), batch.OldValues.Shared(count), table, bytes.Cast<int>(), bytes.Cast<long>(), _device.ResidentPages.View.Cast<int>(), _device.ResidentPages.View, _control.Shared(), batch.Faults.Shared(), Hazards.Shared, _progress.Shared());
                _accelerator.Synchronize();
            }
        }
        finally
        {
            if (faults is not null)
            {
                faults.Running = false;
            }
        }

        Hazards.LaunchEnded();
    }

    /// <summary>
    /// <see cref="LaunchOnce"/> with the batch's ops and old values in the device's own memory (docs/architecture.md,
    /// "batch bookkeeping in device memory"): the ops are copied in when they changed, the kernel reads them and writes
    /// the old values at device-memory speed, and the old values are copied out once it returns. States stay in
    /// host-mapped memory: the host refuses ops and watches the op a grant serves through them while the kernel runs.
    /// </summary>
    private void LaunchWithBookkeepingInDeviceMemory(BatchKernel kernel, DeviceBatch batch, SharedView<long> table, ArrayView<byte> bytes)
    {
        var count = batch.Count;
        batch.EnsureDeviceBookkeeping(_accelerator);
        var ops = batch.DeviceOps!.View.SubView(0, count);
        var oldValues = batch.DeviceOldValues!;
        if (batch.DeviceOpsStale)
        {
            // On the stream the kernel runs on: the copy is done before the kernel starts.
            ReadOnlySpan<DeviceOp> source = batch.Ops.AsSpan(count);
            ops.CopyFromCPU(_accelerator.DefaultStream, in source);
            batch.DeviceOpsStale = false;
        }

        var deviceOldValues = new SharedView<long> { View = oldValues.View.SubView(0, count), DeviceAddress = oldValues.NativePtr.ToInt64() };
        kernel(_grid, ops, batch.States.Shared(count), deviceOldValues, table, bytes.Cast<int>(), bytes.Cast<long>(), _device.ResidentPages.View.Cast<int>(), _device.ResidentPages.View, _control.Shared(), batch.Faults.Shared(), Hazards.Shared, _progress.Shared());
        _accelerator.Synchronize();

        // Every launch of the batch: ops applied by earlier launches keep their old values there, since a replay skips them.
        var destination = batch.OldValues.AsSpan(count);
        oldValues.View.SubView(0, count).CopyToCPU(_accelerator.DefaultStream, in destination);
        _accelerator.DefaultStream.Synchronize();
    }

    /// <summary>
    /// Empties the fault count, the left-pending flag and (where its last launch recorded faults) the fault ring: with
    /// the device held and no kernel running (a one-shot launch's prepare step, or a resident batch before its doorbell),
    /// never after the host has started servicing the launch.
    /// </summary>
    private void ResetFaultRecords(DeviceBatch ringOwner)
    {
        Volatile.Write(ref _control[ControlBlock.FaultCount], 0);
        Volatile.Write(ref _control[ControlBlock.LeftPending], 0);
        if (ringOwner.FaultCount != 0)
        {
            // The host zeroes the entries it takes; a launch that ended with entries not taken leaves them behind.
            ringOwner.Faults.AsSpan((int)ringOwner.Faults.Length).Clear();
            ringOwner.FaultCount = 0;
        }
    }

    /// <summary>After a launch (or a resident batch): what the host needs to know to replay what is left.</summary>
    private void FinishLaunch(DeviceBatch batch, LaunchFaults faults)
    {
        batch.FaultCount = Volatile.Read(ref _control[ControlBlock.FaultCount]);
        // A thread that stopped waiting for a grant left its op pending and said so; a stop raised during the launch may
        // have left ops that never ran and said nothing; a lapped fault ring lost records. Any of them: scan.
        batch.LeftPending = Volatile.Read(ref _control[ControlBlock.LeftPending]) != 0 || faults.Overflowed;
        batch.Stopped = (Volatile.Read(ref _control[ControlBlock.Stop]) & ControlBlock.StopRequested) != 0;
    }

    /// <summary>
    /// Runs <paramref name="batch"/> on the resident kernel of <paramref name="mirror"/> (launching it if it is not
    /// live): copies the batch into the kernel's staging arrays, rings the doorbell, services its device faults until
    /// the kernel reports the batch finished, and copies states and old values back.
    /// </summary>
    private void RunOnResidentKernel(DeviceBatch batch, DeviceMirror mirror)
    {
        var staging = _residentBatch!;
        Executor.RunResident(
            mirror,
            prepare: () =>
            {
                _doorbell = 0;
                Volatile.Write(ref _control[ControlBlock.Doorbell], 0);
                Volatile.Write(ref _control[ControlBlock.Finished], 0);
                Volatile.Write(ref _control[ControlBlock.IdlePolls], _residentIdlePolls);
            },
            residentLaunch: () =>
            {
                ObjectDisposedException.ThrowIf(_device.IsDisposed, _device);
                ObjectDisposedException.ThrowIf(mirror.IsDisposed, mirror);
                _accelerator.Bind();
                // The table and pool are launch arguments: a table swap quiesces, which ends this launch.
                var bytes = mirror.PoolBuffer.AsRawArrayView();
                Hazards.LaunchBegins();
                _serve(_residentGrid, staging.Ops.View, staging.States.Shared(), staging.OldValues.Shared(), mirror.TableShared, bytes.Cast<int>(), bytes.Cast<long>(), _device.ResidentPages.View.Cast<int>(), _device.ResidentPages.View, _control.Shared(), staging.Faults.Shared(), Hazards.Shared, _progress.Shared());
                _accelerator.Synchronize();
                Hazards.LaunchEnded();
            },
            batch: () =>
            {
                ObjectDisposedException.ThrowIf(_device.IsDisposed, _device);
                ObjectDisposedException.ThrowIf(mirror.IsDisposed, mirror);
                var count = batch.Count;
                batch.Ops.AsSpan(count).CopyTo(staging.Ops.AsSpan(count));
                batch.States.AsSpan(count).CopyTo(staging.States.AsSpan(count));
                batch.OldValues.AsSpan(count).CopyTo(staging.OldValues.AsSpan(count));
                ResetFaultRecords(staging);
                Volatile.Write(ref _control[ControlBlock.Count], count);
                var faults = new LaunchFaults(batch, staging.States, staging.Faults, _residentThreads);
                batch.Launch = faults;
                var bell = _doorbell == int.MaxValue ? 1 : _doorbell + 1; // never negative: the kernel reads that as "leave"
                faults.Running = true;
                if (Interlocked.CompareExchange(ref _control[ControlBlock.Doorbell], bell, _doorbell) != _doorbell)
                {
                    faults.Running = false;
                    return false; // closed: the kernel left after its idle polls
                }

                _doorbell = bell;
                try
                {
                    WaitUntilFinished(bell, () => mirror.ServiceLaunchFaults(faults));
                }
                finally
                {
                    faults.Running = false;
                }

                staging.States.AsSpan(count).CopyTo(batch.States.AsSpan(count));
                staging.OldValues.AsSpan(count).CopyTo(batch.OldValues.AsSpan(count));
                FinishLaunch(batch, faults);
                staging.FaultCount = batch.FaultCount;
                return true;
            });
    }

    /// <summary>
    /// Waits (bounded) until the resident kernel reports batch <paramref name="bell"/> finished, calling
    /// <paramref name="service"/> meanwhile for the faults it records. A service error raises the stop flag (the kernel
    /// leaves after this batch) and is thrown once the batch is finished: the staging arrays are never reused under it.
    /// </summary>
    private void WaitUntilFinished(int bell, Func<bool> service)
    {
        var spin = default(SpinWait);
        var deadline = Executor.StartDeadline();
        Exception? serviceError = null;
        Func<bool>? pump = service;
        while (Volatile.Read(ref _control[ControlBlock.Finished]) != bell)
        {
            if (pump is not null)
            {
                try
                {
                    if (pump())
                    {
                        spin = default;
                        continue;
                    }
                }
                catch (Exception ex)
                {
                    serviceError = ex;
                    pump = null;
                    SetStopRequested(true);
                }
            }

            if (deadline.ExpiredWhileSpinning())
            {
                throw Executor.Fail("the resident kernel to report a batch finished");
            }

            Executor.ThrowIfFailed();
            if (spin.Count > 0 && spin.Count % 1024 == 0 && !Executor.IsResident)
            {
                // It may have finished the batch, idled and left while this thread was descheduled: its launch has
                // returned, so what it wrote is all there to see now.
                if (Volatile.Read(ref _control[ControlBlock.Finished]) == bell)
                {
                    break;
                }

                Executor.ThrowIfResidentGone();
            }

            // Yield rather than sleep: the kernel answers within microseconds, a 1 ms sleep would dominate.
            spin.SpinOnce(sleep1Threshold: -1);
        }

        if (serviceError is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(serviceError);
        }
    }

    private static BatchKernel LoadBatchKernel(
        Accelerator accelerator,
        Action<ArrayView<DeviceOp>, SharedView<int>, SharedView<long>, SharedView<long>, ArrayView<int>, ArrayView<long>, ArrayView<int>, ArrayView<long>, SharedView<int>, SharedView<int>, SharedView<int>, SharedView<int>> kernel) =>
        accelerator.LoadStreamKernel(kernel);

    /// <summary>Raises or clears the stop bit of the stop word, leaving the test stall bit alone.</summary>
    private void SetStopRequested(bool stop)
    {
        if (stop)
        {
            Interlocked.Or(ref _control[ControlBlock.Stop], ControlBlock.StopRequested);
        }
        else
        {
            Interlocked.And(ref _control[ControlBlock.Stop], ~ControlBlock.StopRequested);
        }
    }

    /// <summary>
    /// Test hook: makes every kernel of this device spin at its next stop poll (with whatever hazard word it has
    /// published) until called with false — a device that stops answering, on any backend. Releasing works after the
    /// device's disposal too, as long as a stalled kernel still runs.
    /// </summary>
    internal void StallKernelsForTest(bool stall)
    {
        if (_control.IsFreed)
        {
            return; // disposed, and no kernel was left behind to release
        }

        if (stall)
        {
            Interlocked.Or(ref _control[ControlBlock.Stop], ControlBlock.StallForTest);
        }
        else
        {
            Interlocked.And(ref _control[ControlBlock.Stop], ~ControlBlock.StallForTest);
        }
    }

    /// <summary>Sums the kernels' heartbeat words: it changes while any kernel thread makes progress.</summary>
    internal unsafe long HeartbeatSum()
    {
        var words = _progress.Pointer;
        long sum = 0;
        for (var i = 0L; i < _progress.Length; i += AtomicBatchKernel.ProgressStride)
        {
            sum += Volatile.Read(ref words[i]);
        }

        return sum;
    }

    /// <summary>True while kernel thread <paramref name="thread"/> waits for a grant for op <paramref name="op"/> (it has not used the page yet).</summary>
    internal unsafe bool Awaits(int thread, int op) =>
        Volatile.Read(ref _progress.Pointer[AtomicBatchKernel.ProgressAwaited(thread)]) == op + 1;

    /// <summary>Faults the running kernel has recorded in its fault ring since the launch (or the resident batch) began.</summary>
    internal int FaultCount => Volatile.Read(ref _control[ControlBlock.FaultCount]);

    /// <summary>Hands the memory kernels read and write to <paramref name="retire"/>, the resident staging batch first.</summary>
    internal void RetireMemory(Action<IDisposable> retire)
    {
        if (_residentBatch is not null)
        {
            retire(_residentBatch);
        }

        retire(Hazards.Memory);
        retire(_progress);
        retire(_control);
    }
}
