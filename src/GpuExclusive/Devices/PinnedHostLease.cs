using ILGPU.Runtime.Cuda;
using Microsoft.Extensions.Logging;

namespace GpuExclusive.Devices;

/// <summary>
/// One user's hold on a pinned host range of <see cref="PinnedHostRegistry"/>. Disposing it drops the hold (the last
/// one unregisters the range); a second dispose does nothing, and dispose never throws: it runs in accelerator
/// object disposal, possibly on the finalizer thread, where an exception ends the process. A driver error is logged.
/// </summary>
/// <remarks>
/// A lease that is never disposed is released by its finalizer: ILGPU tracks its buffers through weak references, so
/// a buffer that became unreachable before its accelerator was disposed may never have its own dispose called.
/// </remarks>
internal sealed class PinnedHostLease : IDisposable
{
    private readonly PinnedHostRegistry.Registration _registration;
    private readonly ILogger _logger;
    private PinnedHostRegistry? _registry;

    internal PinnedHostLease(PinnedHostRegistry registry, PinnedHostRegistry.Registration registration, ILogger logger)
    {
        _registry = registry;
        _registration = registration;
        _logger = logger;
    }

    ~PinnedHostLease() => Release();

    internal HostRange Range => _registration.Range;

    internal bool IsDisposed => Volatile.Read(ref _registry) is null;

    /// <summary>The device address of the range as kernels in <paramref name="context"/> (a <c>CUcontext</c>) see it.</summary>
    /// <exception cref="InvalidOperationException">The driver gave none.</exception>
    internal nint DevicePointer(nint context)
    {
        var registry = Volatile.Read(ref _registry);
        ObjectDisposedException.ThrowIf(registry is null, this);
        return registry.DevicePointer(Range, context);
    }

    /// <summary>
    /// The address <paramref name="accelerator"/>'s kernels use for the range: the host pointer itself where the device
    /// can use host pointers for registered memory, else the address <c>cuMemHostGetDevicePointer</c> gives in its context.
    /// </summary>
    internal nint DevicePointerFor(CudaAccelerator accelerator) =>
        accelerator.Device.SupportsUsingHostPointerForRegisteredMemory ? Range.Pointer : DevicePointer(accelerator.NativePtr);

    public void Dispose()
    {
        Release();
        GC.SuppressFinalize(this);
    }

    private void Release()
    {
        var registry = Interlocked.Exchange(ref _registry, null);
        if (registry is null)
        {
            return;
        }

        try
        {
            registry.Release(_registration, _logger);
        }
        catch (Exception ex)
        {
            // Whatever the driver binding threw (a missing entry point, say): logged, since dispose must not throw.
            DeviceLog.ReleaseThrew(_logger, ex, Range.Start, Range.End);
        }
    }
}
