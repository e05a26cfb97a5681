using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Microsoft.Extensions.Logging;

namespace GpuExclusive.Devices;

/// <summary>
/// A CUDA <see cref="MemoryBuffer"/> over host memory we own, pinned and device-mapped through a lease of
/// <see cref="PinnedHostRegistry"/>: kernels address the host pages directly (zero-copy). ILGPU's <c>PageLockScope</c>
/// registers memory too but gives no <see cref="ArrayView{T}"/>, and <c>CudaMemoryBuffer</c> only allocates, hence
/// this subclass (the pattern of ILGPU's <c>Samples/MonitorProgress</c>). It does not register the memory itself: CUDA
/// allows one registration of a range per process, and several devices may bind the same page pool. Disposing it
/// drops its lease; the memory itself stays the caller's.
/// </summary>
internal sealed class CudaHostMappedBuffer : MemoryBuffer
{
    private readonly PinnedHostLease? _lease;

    internal CudaHostMappedBuffer(CudaAccelerator accelerator, IntPtr hostPointer, long bytes, PinnedHostRegistry registry, ILogger logger)
        : base(accelerator, bytes, 1)
    {
        // The base constructor has made this an ILGPU child object of the accelerator, with a finalizer: a failure
        // below disposes it, so nothing is left for the finalizer to release.
        try
        {
            if (!accelerator.Device.SupportsMappingHostMemory)
            {
                throw new NotSupportedException($"CUDA device {accelerator.Name} cannot map host memory, so it cannot work on the page pool zero-copy");
            }

            _lease = registry.Acquire(new HostRange(hostPointer, bytes), accelerator.DeviceId, logger);
            NativePtr = _lease.DevicePointerFor(accelerator);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    protected override void MemSet(AcceleratorStream stream, byte value, in ArrayView<byte> targetView) =>
        CudaMemoryBuffer.CudaMemSet(stream as CudaStream, value, targetView);

    protected override void CopyFrom(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        CudaMemoryBuffer.CudaCopy(stream as CudaStream, sourceView, targetView);

    protected override void CopyTo(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        CudaMemoryBuffer.CudaCopy(stream as CudaStream, sourceView, targetView);

    /// <summary>
    /// Drops the lease. Never throws, also from the finalizer (<paramref name="disposing"/> false): the lease logs a
    /// driver error instead. The lease is a plain managed object, still reachable from here on the finalizer thread.
    /// </summary>
    protected override void DisposeAcceleratorObject(bool disposing)
    {
        _lease?.Dispose();
        NativePtr = IntPtr.Zero;
    }
}
