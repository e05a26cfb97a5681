using System.Collections.Concurrent;
using System.Diagnostics;
using GpuExclusive.Devices;
using ILGPU;
using ILGPU.Runtime;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

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
    private readonly ILogger _logger;

    // Launches, the resident kernel and the memory kernels share with the host (control block, progress, hazard words).
    private readonly KernelLauncher _launcher;

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
        _logger = loggerFactory.CreateLogger<ExclusiveDevice>();
        Kind = kind;
        Name = accelerator.Name;
        Binder = ZeroCopyBinder.For(accelerator, loggerFactory);
        QuantumTicks = (long)(settings.DeviceQuantumMicroseconds * (Stopwatch.Frequency / 1e6));
        DefaultPlacement = settings.PagePlacement;
        ResidentPages = new ResidentPageMemory(accelerator, settings.DeviceResidentPages);
        _launcher = new KernelLauncher(this, accelerator, kind, settings, OnFailed, FreeRetiredIfNoKernelRuns);
        DeviceLog.Opened(_logger, kind, Name, _launcher.Groups, _launcher.GroupSize, reason);
    }

    /// <summary>The backend really created (ILGPU would silently fall back to the CPU; this never does).</summary>
    public AcceleratorKind Kind { get; }

    /// <summary>The device name ILGPU reports.</summary>
    public string Name { get; }

    /// <summary>Threads in the persistent kernel grid.</summary>
    public int GridThreads => _launcher.GridThreads;

    internal DeviceExecutor Executor => _launcher.Executor;

    /// <summary>Launches and the resident kernel: what runs a mirror's batches.</summary>
    internal KernelLauncher Launcher => _launcher;

    /// <summary>The host's half of the hazard protocol.</summary>
    internal HazardWords Hazards => _launcher.Hazards;

    /// <summary>Kernel launches begun and not yet synchronized (for tests: revocations skip the hazard scan at zero).</summary>
    internal int KernelsInFlight => _launcher.Hazards.KernelsInFlight;

    /// <summary>The device quantum (<see cref="EngineSettings.DeviceQuantumMicroseconds"/>) in <see cref="Stopwatch"/> ticks.</summary>
    internal long QuantumTicks { get; }

    internal ZeroCopyBinder Binder { get; }

    /// <summary>The ILGPU accelerator (for the memory and baselines of this device; kernels run through <see cref="Executor"/>).</summary>
    internal Accelerator Accelerator => _accelerator;

    /// <summary>The placement of mirrors created without one (<see cref="EngineSettings.PagePlacement"/>).</summary>
    public PagePlacement DefaultPlacement { get; }

    /// <summary>Device memory for the pages of device-resident mirrors (docs/architecture.md, "device-resident pages").</summary>
    internal ResidentPageMemory ResidentPages { get; }

    internal ILoggerFactory LoggerFactory => _loggerFactory;

    internal bool IsDisposed => _disposed;

    /// <summary>Opens the accelerator of <paramref name="kind"/>; <see cref="AcceleratorKind.Auto"/> prefers a CUDA GPU, else the CPU accelerator.</summary>
    /// <exception cref="NotSupportedException">The requested kind is not present, or cannot work zero-copy (OpenCL).</exception>
    public static ExclusiveDevice Open(AcceleratorKind kind = AcceleratorKind.Auto, ILoggerFactory? loggerFactory = null) =>
        Open(new EngineSettings { Accelerator = kind }, loggerFactory);

    /// <summary>
    /// Opens the accelerator <paramref name="settings"/> name (chosen by the same rule <c>gpux info</c> reports), with its
    /// kernel grid (<see cref="EngineSettings.KernelGroupSize"/>, <see cref="EngineSettings.KernelGroups"/>; 0 sizes it
    /// to the device) and its other engine settings.
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
        var context = AcceleratorSelection.CreateContext(kind);
        try
        {
            var (accelerator, actual, reason) = AcceleratorSelection.Open(context, kind);
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
        Check(settings.DeviceResidentPages, nameof(EngineSettings.DeviceResidentPages));
        if (!Enum.IsDefined(settings.PagePlacement))
        {
            throw new ArgumentOutOfRangeException(nameof(settings), settings.PagePlacement, $"EngineSettings.PagePlacement must be InPlace or DeviceResident (got {(int)settings.PagePlacement})");
        }

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

    /// <summary>
    /// Creates the mirror through which this device accesses <paramref name="space"/>, placing the pages it holds
    /// exclusively as <see cref="DefaultPlacement"/> says.
    /// </summary>
    /// <exception cref="InvalidOperationException">This device already mirrors the space.</exception>
    public DeviceMirror Mirror(AddressSpace space) => Mirror(space, DefaultPlacement);

    /// <summary>
    /// Creates the mirror through which this device accesses <paramref name="space"/>, working on the pages it holds
    /// exclusively in host memory (<see cref="PagePlacement.InPlace"/>) or in its own memory
    /// (<see cref="PagePlacement.DeviceResident"/>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="placement"/> is not a placement.</exception>
    /// <exception cref="InvalidOperationException">This device already mirrors the space.</exception>
    public DeviceMirror Mirror(AddressSpace space, PagePlacement placement)
    {
        ArgumentNullException.ThrowIfNull(space);
        if (!Enum.IsDefined(placement))
        {
            throw new ArgumentOutOfRangeException(nameof(placement), placement, $"placement {(int)placement} is not InPlace or DeviceResident");
        }

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

            if (placement == PagePlacement.DeviceResident)
            {
                // Before the mirror exists: its kernels' views of resident memory are fixed at their launch.
                ResidentPages.EnsureAllocated();
            }

            var mirror = new DeviceMirror(this, space, PoolViewLocked(space.Pool), placement);
            _mirrors.Add(mirror);
            return mirror;
        }
    }

    /// <summary>Allocates an array that host and kernels share zero-copy.</summary>
    internal HostMappedArray<T> AllocateShared<T>(long length)
        where T : unmanaged => new(Binder, length);

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

            _launcher.Hazards.CloseAndDrain();

            // In this order: the accelerator (and the CUDA context) goes after the memory bound to it.
            _launcher.RetireMemory(Retire);
            Retire(ResidentPages);
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
            while (!(Executor.Failure is not null && _launcher.Hazards.KernelsInFlight > 0) && _retired.TryDequeue(out var memory))
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

    /// <summary>The kernels' heartbeat sum (tests: a launch has started when it changes).</summary>
    internal long HeartbeatSumForTest() => _launcher.HeartbeatSum();

    /// <inheritdoc cref="KernelLauncher.StallKernelsForTest"/>
    internal void StallKernelsForTest(bool stall) => _launcher.StallKernelsForTest(stall);

    /// <summary>
    /// Launches the batch kernel without hazard words over <paramref name="memory"/> with a caller-built device page
    /// table: the baseline "device atomics through the engine" is measured against (see <see cref="KernelLauncher.LaunchRaw"/>).
    /// </summary>
    internal void LaunchRaw(DeviceBatch batch, HostMappedArray<long> table, MemoryBuffer memory) => _launcher.LaunchRaw(batch, table, memory);

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
        Debug.Assert(_lock.IsHeldByCurrentThread, "the pool bindings are guarded by the device lock");
        if (!_pools.TryGetValue(pool, out var binding))
        {
            binding = Binder.Bind((IntPtr)pool.Base, pool.Capacity * PagePool.PageSize);
            _pools[pool] = binding;
            pool.Disposing += ForgetPool;
        }

        return binding;
    }
}
