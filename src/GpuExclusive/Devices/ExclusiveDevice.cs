using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using GpuExclusive.Devices;
using GpuExclusive.Kernels;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using BatchKernel = System.Action<ILGPU.KernelConfig, ILGPU.ArrayView<GpuExclusive.Kernels.DeviceOp>, GpuExclusive.Kernels.SharedView<int>, GpuExclusive.Kernels.SharedView<long>, GpuExclusive.Kernels.SharedView<long>, ILGPU.ArrayView<int>, ILGPU.ArrayView<long>, GpuExclusive.Kernels.SharedView<int>, GpuExclusive.Kernels.SharedView<int>, GpuExclusive.Kernels.SharedView<int>, GpuExclusive.Kernels.SharedView<int>>;

namespace GpuExclusive;

/// <summary>
/// One ILGPU accelerator able to take pages of host memory exclusively and run atomics on them zero-copy (CUDA, or
/// ILGPU's CPU accelerator; OpenCL is refused because ILGPU cannot give it a zero-copy view of the pool). Named so as
/// not to clash with <c>ILGPU.Runtime.Device</c>.
/// </summary>
/// <remarks>
/// The device runs one kernel at a time: a persistent grid-stride kernel sized to the device for a large batch, or the
/// resident kernel that serves small batches through a doorbell (EngineSettings.ResidentBatchOps). Invalidation
/// callbacks do not stop it; a device page-table swap or a teardown stops it cooperatively. All members are
/// thread-safe. Disposing the device stops a running batch (its <see cref="DeviceMirror.Run(ReadOnlySpan{AtomicOp}, Span{long})"/> throws
/// <see cref="ObjectDisposedException"/>) and disposes its mirrors.
/// </remarks>
public sealed class ExclusiveDevice : IDisposable
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly ILoggerFactory _loggerFactory;
    private readonly HostMappedArray<int> _control;
    private readonly BatchKernel _kernel;
    private readonly BatchKernel _serve;
    private BatchKernel? _rawKernel;
    private readonly bool _onCpu;
    private readonly KernelConfig _grid;

    // One word per kernel thread: the slot (+1) whose entry it is reading or whose page it is applying an atomic to.
    private readonly HostMappedArray<int> _hazards;

    // Two words per kernel thread (AtomicBatchKernel.ProgressStride): a heartbeat bumped at every stop poll — how the
    // host tells a long batch from a stalled device — and the op (+1) the thread awaits a grant for.
    private readonly HostMappedArray<int> _progress;

    // The resident kernel's staging batch (null when it is turned off) and its last doorbell number.
    private readonly DeviceBatch? _residentBatch;
    private readonly KernelConfig _residentGrid;
    private readonly int _residentIdlePolls;
    private int _doorbell;

    // Invalidation callbacks inside WaitForHazards: a callback can still be running when its mirror's registration is
    // removed, so Dispose waits for them before it frees the hazard words.
    private int _hazardWaiters;

    // Kernel launches begun and not yet synchronized (raised before the launch, lowered only after a synchronize that
    // returned, so a launch that failed leaves it raised: the safe side). While it is zero no kernel thread can be
    // between publishing a hazard word and finishing its op, which lets WaitForHazards skip the scan (and Dispose's
    // handshake) for the common revocation of a page whose device is idle.
    private int _kernelsInFlight;

    /// <summary>Kernel launches begun and not yet synchronized (for tests: revocations skip the hazard scan at zero).</summary>
    internal int KernelsInFlight => Volatile.Read(ref _kernelsInFlight);

    // Doorbell polls per microsecond of the resident kernel on the CPU accelerator (two atomic loads each), roughly:
    // it turns the idle time into a poll limit, since a kernel cannot read a clock.
    private const int CpuPollsPerMicrosecond = 50;

    private readonly ILogger _logger;

    // Host-mapped memory a failed device's stuck kernel may still touch: freed by the launcher thread once the kernel
    // returns (never, if it never does), instead of under it.
    private readonly ConcurrentQueue<IDisposable> _retired = new();

    // Guards _pools, _mirrors and _disposed transitions.
    private readonly Lock _lock = new();
    private readonly Dictionary<PagePool, MemoryBuffer> _pools = [];
    private readonly List<DeviceMirror> _mirrors = [];
    private volatile bool _disposed;

    private ExclusiveDevice(Context context, Accelerator accelerator, AcceleratorKind kind, string reason, ILoggerFactory loggerFactory, EngineSettings settings)
    {
        _context = context;
        _accelerator = accelerator;
        _loggerFactory = loggerFactory;
        Kind = kind;
        Name = accelerator.Name;
        Binder = ZeroCopyBinder.For(accelerator, loggerFactory);
        _control = new HostMappedArray<int>(Binder, ControlBlock.Length);
        _logger = loggerFactory.CreateLogger<ExclusiveDevice>();
        Executor = new DeviceExecutor(
            Name,
            SetStopRequested,
            TimeSpan.FromTicks(settings.StopPollIntervalMicroseconds * TimeSpan.TicksPerMicrosecond),
            // On the CPU accelerator the resident kernel counts its own idle polls and leaves; a GPU's waits for the host.
            kind == AcceleratorKind.Cpu ? null : TimeSpan.FromTicks(settings.ResidentIdleMicroseconds * TimeSpan.TicksPerMicrosecond),
            TimeSpan.FromMilliseconds(settings.DeviceTimeoutMilliseconds),
            HeartbeatSum,
            OnFailed,
            FreeRetiredIfNoKernelRuns,
            sharesCpuResidency: kind == AcceleratorKind.Cpu);
        // Kernels for a GPU access what they share with the host at system scope through inline PTX, which the CPU
        // accelerator cannot run; it gets the same kernels over Interlocked operations.
        _onCpu = kind == AcceleratorKind.Cpu;
        _kernel = LoadBatchKernel(accelerator, _onCpu ? AtomicBatchKernel.ApplyOnCpuAccelerator : AtomicBatchKernel.Apply);
        _serve = LoadBatchKernel(accelerator, _onCpu ? AtomicBatchKernel.ServeOnCpuAccelerator : AtomicBatchKernel.Serve);
        // A persistent grid sized to the device (settings may override): every thread strides over the batch, so
        // a stop is seen within StopPollOps ops per thread, whatever the batch size.
        var groupSize = settings.KernelGroupSize > 0
            ? Math.Min(settings.KernelGroupSize, accelerator.MaxNumThreadsPerGroup)
            : kind == AcceleratorKind.Cuda ? Math.Min(accelerator.MaxNumThreadsPerGroup, 256) : 1;
        var groups = settings.KernelGroups > 0
            ? settings.KernelGroups
            : Math.Max(1, accelerator.MaxNumThreadsPerMultiprocessor / groupSize) * accelerator.NumMultiprocessors;
        _grid = new KernelConfig(groups, groupSize);
        GridThreads = groups * groupSize;
        // The resident kernel is one group: one thread on the CPU accelerator (it polls a core while it waits, and
        // more threads would meet at a barrier per batch), a block of 128 on a GPU.
        var residentThreads = kind == AcceleratorKind.Cuda ? Math.Min(128, accelerator.MaxNumThreadsPerGroup) : 1;
        _residentGrid = new KernelConfig(1, residentThreads);
        // On the CPU accelerator the kernel leaves by itself after the idle time's worth of polls: a host timer is too
        // coarse (a millisecond) for a thread that holds a core while it polls. A GPU waits for the host's timer.
        _residentIdlePolls = kind == AcceleratorKind.Cpu
            ? (int)Math.Min(int.MaxValue, (long)settings.ResidentIdleMicroseconds * CpuPollsPerMicrosecond)
            : 0;
        _hazards = new HostMappedArray<int>(Binder, (long)Math.Max(GridThreads, residentThreads) * AtomicBatchKernel.HazardStride);
        _progress = new HostMappedArray<int>(Binder, (long)Math.Max(GridThreads, residentThreads) * AtomicBatchKernel.ProgressStride);
        if (settings.ResidentBatchOps > 0)
        {
            _residentBatch = new DeviceBatch(this, settings.ResidentBatchOps);
        }
        QuantumTicks = (long)(settings.DeviceQuantumMicroseconds * (Stopwatch.Frequency / 1e6));
        _residentThreads = residentThreads;
        DeviceLog.Opened(_logger, kind, Name, groups, groupSize, reason);
    }

    /// <summary>The backend really created (ILGPU would silently fall back to the CPU; this never does).</summary>
    public AcceleratorKind Kind { get; }

    /// <summary>The device name ILGPU reports.</summary>
    public string Name { get; }

    /// <summary>Threads in the persistent kernel grid.</summary>
    public int GridThreads { get; }

    internal DeviceExecutor Executor { get; }

    /// <summary>The device quantum (<see cref="EngineSettings.DeviceQuantumMicroseconds"/>) in <see cref="Stopwatch"/> ticks.</summary>
    internal long QuantumTicks { get; }

    /// <summary>Faults the running kernel has recorded in its fault ring since the launch (or the resident batch) began.</summary>
    internal int FaultCount => Volatile.Read(ref _control[ControlBlock.FaultCount]);

    private readonly int _residentThreads;

    internal ZeroCopyBinder Binder { get; }

    internal ILoggerFactory LoggerFactory => _loggerFactory;

    internal bool IsDisposed => _disposed;

    /// <summary>Opens the accelerator of <paramref name="kind"/>; <see cref="AcceleratorKind.Auto"/> prefers a CUDA GPU, else the CPU accelerator.</summary>
    /// <exception cref="NotSupportedException">The requested kind is not present, or cannot work zero-copy (OpenCL).</exception>
    public static ExclusiveDevice Open(AcceleratorKind kind = AcceleratorKind.Auto, ILoggerFactory? loggerFactory = null) =>
        Open(new EngineSettings { Accelerator = kind }, loggerFactory);

    /// <summary>
    /// Opens the accelerator <paramref name="settings"/> name, with its kernel grid (<see cref="EngineSettings.KernelGroupSize"/>,
    /// <see cref="EngineSettings.KernelGroups"/>; 0 sizes it to the device) and stop-poll interval.
    /// </summary>
    /// <exception cref="NotSupportedException">The requested kind is not present, or cannot work zero-copy (OpenCL).</exception>
    public static ExclusiveDevice Open(EngineSettings settings, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ValidateRanges(settings);
        var kind = settings.Accelerator;
        if (!Enum.IsDefined(kind))
        {
            throw new ArgumentException($"accelerator kind {(int)kind} is not Auto, Cpu, Cuda or OpenCL", nameof(kind));
        }

        loggerFactory ??= NullLoggerFactory.Instance;
        // A CPU device sized to the machine, less one core for the host: ILGPU's default 16 worker threads spin against
        // each other on small machines, and kernel threads on every core leave none for the threads that revoke pages
        // and service the kernel's faults — a GPU never takes the host's cores, and the CPU accelerator stands in for
        // one. Each multiprocessor runs one kernel thread (a group of one; ILGPU's warps have two lanes at least).
        var cores = Environment.ProcessorCount;
        var cpu = new CPUDevice(numThreadsPerWarp: 2, numWarpsPerMultiprocessor: 1, numMultiprocessors: Math.Max(1, cores - 1));
        var context = Context.Create(builder =>
        {
            builder.CPU(cpu);
            if (kind is AcceleratorKind.Auto or AcceleratorKind.Cuda)
            {
                builder.Cuda();
            }

            if (kind is AcceleratorKind.OpenCL)
            {
                builder.OpenCL();
            }
        });

        try
        {
            Accelerator accelerator;
            string reason;
            switch (kind)
            {
                case AcceleratorKind.Cuda:
                case AcceleratorKind.Auto when context.GetCudaDevices().Count > 0:
                    if (context.GetCudaDevices().Count == 0)
                    {
                        throw new NotSupportedException("CUDA was requested but ILGPU finds no CUDA device (no NVIDIA GPU or driver on this machine); use Cpu or Auto");
                    }

                    accelerator = context.CreateCudaAccelerator(0);
                    reason = kind == AcceleratorKind.Auto ? "Auto prefers a CUDA GPU" : "CUDA requested";
                    break;
                case AcceleratorKind.OpenCL:
                    var usable = context.GetCLDevices().Count;
                    throw new NotSupportedException(usable == 0
                        ? "OpenCL was requested but ILGPU accepts no OpenCL device here (none present, or none with generic address space support)"
                        : "OpenCL was requested, but ILGPU's OpenCL backend cannot map the host page pool zero-copy, and GpuExclusive does not copy pages behind your back; use Cuda or Cpu");
                default:
                    accelerator = context.CreateCPUAccelerator(0);
                    reason = kind == AcceleratorKind.Auto ? "Auto found no CUDA GPU; using ILGPU's CPU accelerator" : "CPU accelerator requested";
                    break;
            }

            var actual = accelerator.AcceleratorType switch
            {
                AcceleratorType.Cuda => AcceleratorKind.Cuda,
                AcceleratorType.CPU => AcceleratorKind.Cpu,
                _ => AcceleratorKind.OpenCL,
            };
            if (kind != AcceleratorKind.Auto && actual != kind)
            {
                accelerator.Dispose();
                throw new NotSupportedException($"{kind} was requested but ILGPU created a {accelerator.AcceleratorType} accelerator");
            }

            try
            {
                return new ExclusiveDevice(context, accelerator, actual, reason, loggerFactory, settings);
            }
            catch
            {
                accelerator.Dispose();
                throw;
            }
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The ranges <see cref="EngineSettings"/> documents (the loader enforces them; a hand-built instance may not): a
    /// negative poll interval, say, would only fail later, inside an invalidation callback.
    /// </summary>
    private static void ValidateRanges(EngineSettings settings)
    {
        Check(settings.KernelGroupSize, nameof(EngineSettings.KernelGroupSize));
        Check(settings.KernelGroups, nameof(EngineSettings.KernelGroups));
        Check(settings.StopPollIntervalMicroseconds, nameof(EngineSettings.StopPollIntervalMicroseconds));
        Check(settings.ResidentBatchOps, nameof(EngineSettings.ResidentBatchOps));
        Check(settings.ResidentIdleMicroseconds, nameof(EngineSettings.ResidentIdleMicroseconds));
        Check(settings.DeviceTimeoutMilliseconds, nameof(EngineSettings.DeviceTimeoutMilliseconds));
        Check(settings.DeviceQuantumMicroseconds, nameof(EngineSettings.DeviceQuantumMicroseconds));

        static void Check(int value, string name)
        {
            // The loader's table is the one place the ranges are written down.
            var (min, max) = EngineSettingsLoader.RangeOf("Engine:" + name);
            if (value < min || value > max)
            {
                throw new ArgumentOutOfRangeException(nameof(settings), value, $"EngineSettings.{name} must be between {min} and {max} (got {value})");
            }
        }
    }

    /// <summary>Creates the mirror through which this device accesses <paramref name="space"/>.</summary>
    /// <exception cref="InvalidOperationException">This device already mirrors the space.</exception>
    public DeviceMirror Mirror(AddressSpace space)
    {
        ArgumentNullException.ThrowIfNull(space);
        ObjectDisposedException.ThrowIf(_disposed, this);
        ObjectDisposedException.ThrowIf(space.IsDisposed, space);
        Executor.ThrowIfFailed();
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_mirrors.Any(m => ReferenceEquals(m.Space, space) && !m.IsDisposed))
            {
                throw new InvalidOperationException("this device already has a mirror of that address space");
            }

            var mirror = new DeviceMirror(this, space, PoolViewLocked(space.Pool));
            _mirrors.Add(mirror);
            return mirror;
        }
    }

    /// <summary>Allocates an array that host and kernels share zero-copy.</summary>
    internal HostMappedArray<T> AllocateShared<T>(long length)
        where T : unmanaged => new(Binder, length);

    /// <summary>
    /// Runs one launch of the atomic batch kernel (through the executor: one kernel at a time, stoppable), servicing the
    /// device faults it records while it runs (<see cref="DeviceMirror.ServiceLaunchFaults"/>): a kernel thread that
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
                ObjectDisposedException.ThrowIf(_disposed, this);
                ObjectDisposedException.ThrowIf(mirror.IsDisposed, mirror);
                // Read the table inside the launch: it is only swapped while the executor is quiesced.
                LaunchOnce(_kernel, batch, mirror.TableShared, mirror.PoolBuffer, faults);
            },
            () => mirror.ServiceLaunchFaults(faults));
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
        Executor.Launch(() => LaunchOnce(raw, batch, table.Shared(), memory, faults: null));
    }

    /// <summary>One blocking launch of a batch kernel over the whole grid (on the launcher thread).</summary>
    private void LaunchOnce(BatchKernel kernel, DeviceBatch batch, SharedView<long> table, MemoryBuffer memory, LaunchFaults? faults)
    {
        // On the launcher thread: CUDA launches and synchronizes in the context current on the calling thread.
        _accelerator.Bind();
        ResetFaultRecords(batch);
        var bytes = memory.AsRawArrayView();
        var count = batch.Count;
        Interlocked.Increment(ref _kernelsInFlight);
        if (faults is not null)
        {
            faults.Running = true;
        }

        try
        {
            kernel(_grid, batch.Ops.View.SubView(0, count), batch.States.Shared(count), batch.OldValues.Shared(count), table, bytes.Cast<int>(), bytes.Cast<long>(), _control.Shared(), batch.Faults.Shared(), _hazards.Shared(), _progress.Shared());
            _accelerator.Synchronize();
        }
        finally
        {
            if (faults is not null)
            {
                faults.Running = false;
            }
        }

        Interlocked.Decrement(ref _kernelsInFlight);
    }

    /// <summary>Empties the fault count, the left-pending flag and (where its last launch recorded faults) the fault ring.</summary>
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
                ObjectDisposedException.ThrowIf(_disposed, this);
                ObjectDisposedException.ThrowIf(mirror.IsDisposed, mirror);
                _accelerator.Bind();
                // The table and pool are launch arguments: a table swap quiesces, which ends this launch.
                var bytes = mirror.PoolBuffer.AsRawArrayView();
                Interlocked.Increment(ref _kernelsInFlight);
                _serve(_residentGrid, staging.Ops.View, staging.States.Shared(), staging.OldValues.Shared(), mirror.TableShared, bytes.Cast<int>(), bytes.Cast<long>(), _control.Shared(), staging.Faults.Shared(), _hazards.Shared(), _progress.Shared());
                _accelerator.Synchronize();
                Interlocked.Decrement(ref _kernelsInFlight);
            },
            batch: () =>
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
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
    /// Waits until no kernel thread's hazard word names one of <paramref name="clearedSlots"/> (entries the caller has
    /// just cleared with a full fence): after that no thread can still apply an atomic through them.
    /// </summary>
    /// <remarks>More than 16 slots are sorted here (in place) and then binary-searched.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void WaitForHazards(Span<int> clearedSlots)
    {
        // The caller's clears were full fences, so this read comes after them: if no kernel is in flight now, none can
        // hold a hazard on those entries, and any launched later (its launch raises the count first) reads them cleared.
        if (Volatile.Read(ref _kernelsInFlight) != 0)
        {
            WaitForHazardsOfKernelsInFlight(clearedSlots);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForHazardsOfKernelsInFlight(Span<int> clearedSlots)
    {
        if (clearedSlots.Length > 16)
        {
            clearedSlots.Sort();
        }

        // Registered before looking at _disposed (both full fences): Dispose sets _disposed and then waits for this
        // count to drain before it frees the hazard words, so a waiter either sees the device disposed or is waited for.
        Interlocked.Increment(ref _hazardWaiters);
        try
        {
            if (_disposed || Executor.Failure is not null)
            {
                return; // the device is gone, and its kernels with it; or it failed, and nothing waits on it any more
            }

            var deadline = Executor.StartDeadline();
            for (var word = 0L; word < _hazards.Length; word += AtomicBatchKernel.HazardStride)
            {
                var hazard = Volatile.Read(ref _hazards[word]);
                if (hazard == 0 || !Names(clearedSlots, AtomicBatchKernel.HazardSlot(hazard)))
                {
                    continue;
                }

                // The thread read the entry before it was cleared (or is about to see it cleared): wait for it to move
                // on. Its op takes nanoseconds; the wait is long only if the OS preempted that thread.
                var spin = default(SpinWait);
                while (Volatile.Read(ref _hazards[word]) == hazard)
                {
                    if (deadline.ExpiredWhileSpinning())
                    {
                        // Never throws into the invalidation: the revocation goes on, the device is failed.
                        Executor.Fail("a kernel thread to finish an op on a page being revoked (its hazard word)");
                        return;
                    }

                    if (Executor.Failure is not null)
                    {
                        return;
                    }

                    spin.SpinOnce(sleep1Threshold: -1);
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _hazardWaiters);
        }

        static bool Names(Span<int> slots, int slot) => slots.Length > 16 ? slots.BinarySearch(slot) >= 0 : slots.Contains(slot);
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
        Action<ArrayView<DeviceOp>, SharedView<int>, SharedView<long>, SharedView<long>, ArrayView<int>, ArrayView<long>, SharedView<int>, SharedView<int>, SharedView<int>, SharedView<int>> kernel) =>
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

    /// <summary>The pool is going away (all its spaces, hence our mirrors of them, are gone): drop its binding.</summary>
    private void ForgetPool(PagePool pool)
    {
        lock (_lock)
        {
            if (_pools.Remove(pool, out var binding))
            {
                Retire(binding);
            }
        }
    }

    internal void Forget(DeviceMirror mirror)
    {
        lock (_lock)
        {
            _mirrors.Remove(mirror);
        }
    }

    /// <summary>Stops any running kernel, disposes the mirrors, and releases the accelerator.</summary>
    /// <remarks>
    /// Never throws for a device error: a CUDA error while freeing is logged. On a device declared failed whose kernel
    /// still runs (it stopped answering), the memory that kernel may touch and the accelerator are freed by the launcher
    /// thread when the kernel returns, and never if it does not.
    /// </remarks>
    public void Dispose()
    {
        List<DeviceMirror> mirrors;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            mirrors = [.. _mirrors];
        }

        // Stop a running batch: its Run sees the device disposed and throws. (A failed device is not waited for.)
        Executor.Quiesce();
        try
        {
            foreach (var mirror in mirrors)
            {
                mirror.Dispose();
            }

            lock (_lock)
            {
                foreach (var (pool, binding) in _pools)
                {
                    pool.Disposing -= ForgetPool;
                    Retire(binding);
                }

                _pools.Clear();
            }

            if (!Executor.DisposeAndJoin())
            {
                DeviceLog.LeftBehind(_logger, Name);
            }

            if (_residentBatch is not null)
            {
                Retire(_residentBatch);
            }

            Interlocked.MemoryBarrier(); // _disposed (set above) before reading the count: the other half of WaitForHazards' handshake
            var spin = default(SpinWait);
            while (Volatile.Read(ref _hazardWaiters) != 0)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            // In this order: the accelerator (and the CUDA context) goes after the memory bound to it.
            Retire(_hazards);
            Retire(_progress);
            Retire(_control);
            Retire(new Teardown(_accelerator, _context));
        }
        finally
        {
            Executor.Resume();
        }
    }

    /// <summary>
    /// Frees memory a kernel may read or write (a batch, a device page table, a pool binding): now, unless the device
    /// failed with a kernel still running, in which case the launcher thread frees it once that kernel returns.
    /// </summary>
    internal void Retire(IDisposable memory)
    {
        _retired.Enqueue(memory);
        FreeRetiredIfNoKernelRuns();
    }

    /// <summary>Frees what was retired, in order, unless a failed device's kernel may still run. Errors are logged.</summary>
    private void FreeRetiredIfNoKernelRuns()
    {
        if (_retired.IsEmpty)
        {
            return;
        }

        lock (_retired)
        {
            while (!(Executor.Failure is not null && Volatile.Read(ref _kernelsInFlight) > 0) && _retired.TryDequeue(out var memory))
            {
                try
                {
                    memory.Dispose();
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    // A CUDA error while unregistering or freeing must not escape (it may run on the launcher thread).
                    DeviceLog.FreeFailed(_logger, Name, memory.GetType().Name, ex);
                }
            }
        }
    }

    /// <summary>The kernels' heartbeat sum (tests: a launch has started when it changes).</summary>
    internal long HeartbeatSumForTest() => HeartbeatSum();

    /// <summary>Sums the kernels' heartbeat words: it changes while any kernel thread makes progress.</summary>
    private unsafe long HeartbeatSum()
    {
        var words = _progress.Pointer;
        long sum = 0;
        for (var i = 0L; i < _progress.Length; i += AtomicBatchKernel.ProgressStride)
        {
            sum += Volatile.Read(ref words[i]);
        }

        return sum;
    }

    /// <summary>True while kernel thread <paramref name="thread"/> waits for a grant for op <paramref name="op"/> (it has not seen the page mapped yet).</summary>
    internal unsafe bool Awaits(int thread, int op) =>
        Volatile.Read(ref _progress.Pointer[AtomicBatchKernel.ProgressAwaited(thread)]) == op + 1;

    /// <summary>
    /// The device was declared failed (<see cref="DeviceExecutor"/>): log it, and give every page its mirrors hold back to
    /// the CPU, on a pool thread (the caller may hold locks a revocation needs).
    /// </summary>
    private void OnFailed(DeviceFailedException failure)
    {
        DeviceLog.Failed(_logger, Name, failure.WaitingFor, failure.Timeout.TotalMilliseconds);
        List<DeviceMirror> mirrors;
        lock (_lock)
        {
            mirrors = [.. _mirrors];
        }

        FailureCleanup = Task.Run(() =>
        {
            foreach (var mirror in mirrors)
            {
                try
                {
                    mirror.GiveBackAfterFailure();
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    DeviceLog.GiveBackFailed(_logger, Name, ex);
                }
            }
        });
    }

    /// <summary>The hand-back of a failed device's pages to the CPU (completed while the device answers).</summary>
    internal Task FailureCleanup { get; private set; } = Task.CompletedTask;

    /// <summary>
    /// Test hook: makes every kernel of this device spin at its next stop poll (with whatever hazard word it has
    /// published) until called with false — a device that stops answering, on any backend. Releasing works after
    /// <see cref="Dispose"/> too, as long as a stalled kernel still runs.
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

    /// <summary>The accelerator and its context, disposed last.</summary>
    private sealed class Teardown(Accelerator accelerator, Context context) : IDisposable
    {
        public void Dispose()
        {
            accelerator.Dispose();
            context.Dispose();
        }
    }

    private unsafe MemoryBuffer PoolViewLocked(PagePool pool)
    {
        if (!_pools.TryGetValue(pool, out var binding))
        {
            binding = Binder.Bind((IntPtr)pool.Base, pool.Capacity * PagePool.PageSize);
            _pools[pool] = binding;
            pool.Disposing += ForgetPool;
        }

        return binding;
    }
}
