using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace GpuExclusive.Devices;

/// <summary>
/// A CUDA <see cref="MemoryBuffer"/> over host memory we own, registered with <c>cuMemHostRegister(DEVICEMAP)</c>:
/// kernels address the host pages directly (zero-copy). ILGPU's <c>PageLockScope</c> registers memory too but gives
/// no <see cref="ArrayView{T}"/>, and <c>CudaMemoryBuffer</c> only allocates, hence this subclass (the pattern of
/// ILGPU's <c>Samples/MonitorProgress</c>). Disposing it unregisters the memory; the memory itself stays the caller's.
/// </summary>
internal sealed class CudaHostMappedBuffer : MemoryBuffer
{
    private readonly IntPtr _hostPointer;

    internal CudaHostMappedBuffer(CudaAccelerator accelerator, IntPtr hostPointer, long bytes)
        : base(accelerator, bytes, 1)
    {
        if (!accelerator.Device.SupportsMappingHostMemory)
        {
            throw new NotSupportedException($"CUDA device {accelerator.Name} cannot map host memory, so it cannot work on the page pool zero-copy");
        }

        _hostPointer = hostPointer;
        accelerator.Bind();
        CudaException.ThrowIfFailed(CudaAPI.CurrentAPI.MemHostRegister(
            hostPointer,
            new IntPtr(bytes),
            MemHostRegisterFlags.CU_MEMHOSTREGISTER_PORTABLE | MemHostRegisterFlags.CU_MEMHOSTREGISTER_DEVICEMAP));
        if (accelerator.Device.SupportsUsingHostPointerForRegisteredMemory)
        {
            NativePtr = hostPointer;
        }
        else
        {
            CudaException.ThrowIfFailed(CudaAPI.CurrentAPI.MemHostGetDevicePointer(out var devicePointer, hostPointer, 0));
            NativePtr = devicePointer;
        }
    }

    protected override void MemSet(AcceleratorStream stream, byte value, in ArrayView<byte> targetView) =>
        CudaMemoryBuffer.CudaMemSet(stream as CudaStream, value, targetView);

    protected override void CopyFrom(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        CudaMemoryBuffer.CudaCopy(stream as CudaStream, sourceView, targetView);

    protected override void CopyTo(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        CudaMemoryBuffer.CudaCopy(stream as CudaStream, sourceView, targetView);

    protected override void DisposeAcceleratorObject(bool disposing)
    {
        var result = CudaAPI.CurrentAPI.MemHostUnregister(_hostPointer);
        if (disposing)
        {
            CudaException.ThrowIfFailed(result);
        }

        NativePtr = IntPtr.Zero;
    }
}
