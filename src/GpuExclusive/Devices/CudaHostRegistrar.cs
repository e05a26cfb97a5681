using GpuExclusive.Native;
using ILGPU.Runtime.Cuda;

namespace GpuExclusive.Devices;

/// <summary>
/// <see cref="IHostRegistrar"/> over the CUDA driver. Each call that needs a context pushes it on this thread's
/// context stack and pops it afterwards, so the caller's current context (an ILGPU accelerator's, bound by ILGPU)
/// is current again when the call returns, whatever happened.
/// </summary>
/// <remarks>Constructing it touches nothing: the driver is loaded by the first call, made only for a CUDA accelerator.</remarks>
internal sealed class CudaHostRegistrar : IHostRegistrar
{
    public RegistrarResult RetainPrimaryContext(int device, out nint context)
    {
        context = 0;
        var error = CudaDriver.DeviceGet(out var handle, device);
        if (error != CudaError.CUDA_SUCCESS)
        {
            return Failure("cuDeviceGet", error);
        }

        error = CudaDriver.DevicePrimaryCtxRetain(out context, handle);
        return error == CudaError.CUDA_SUCCESS ? RegistrarResult.Success : Failure("cuDevicePrimaryCtxRetain", error);
    }

    public RegistrarResult ReleasePrimaryContext(int device)
    {
        var error = CudaDriver.DeviceGet(out var handle, device);
        if (error != CudaError.CUDA_SUCCESS)
        {
            return Failure("cuDeviceGet", error);
        }

        error = CudaDriver.DevicePrimaryCtxRelease(handle);
        return error == CudaError.CUDA_SUCCESS ? RegistrarResult.Success : Failure("cuDevicePrimaryCtxRelease", error);
    }

    public RegistrarResult Register(nint context, HostRange range)
    {
        var error = CudaDriver.CtxPushCurrent(context);
        if (error != CudaError.CUDA_SUCCESS)
        {
            return Failure("cuCtxPushCurrent", error);
        }

        var registered = CudaDriver.MemHostRegister(
            range.Pointer,
            (nuint)range.Bytes,
            CudaDriver.MemHostRegisterPortable | CudaDriver.MemHostRegisterDeviceMap);
        var popped = CudaDriver.CtxPopCurrent(out _);
        if (registered != CudaError.CUDA_SUCCESS)
        {
            return Failure("cuMemHostRegister", registered);
        }

        if (popped != CudaError.CUDA_SUCCESS)
        {
            // Reported as a failure, so the registry records nothing: leave nothing registered behind its back.
            // (cuMemHostUnregister needs no particular context current.)
            _ = CudaDriver.MemHostUnregister(range.Pointer);
            return Failure("cuCtxPopCurrent", popped);
        }

        return RegistrarResult.Success;
    }

    public RegistrarResult Unregister(nint context, nint pointer)
    {
        var error = CudaDriver.CtxPushCurrent(context);
        if (error != CudaError.CUDA_SUCCESS)
        {
            return Failure("cuCtxPushCurrent", error);
        }

        var unregistered = CudaDriver.MemHostUnregister(pointer);
        var popped = CudaDriver.CtxPopCurrent(out _);
        return unregistered != CudaError.CUDA_SUCCESS ? Failure("cuMemHostUnregister", unregistered)
            : popped != CudaError.CUDA_SUCCESS ? Failure("cuCtxPopCurrent", popped)
            : RegistrarResult.Success;
    }

    public RegistrarResult DevicePointer(nint context, nint pointer, out nint devicePointer)
    {
        devicePointer = 0;
        var error = CudaDriver.CtxPushCurrent(context);
        if (error != CudaError.CUDA_SUCCESS)
        {
            return Failure("cuCtxPushCurrent", error);
        }

        var found = CudaDriver.MemHostGetDevicePointer(out var address, pointer, 0);
        var popped = CudaDriver.CtxPopCurrent(out _);
        if (found != CudaError.CUDA_SUCCESS)
        {
            return Failure("cuMemHostGetDevicePointer", found);
        }

        devicePointer = (nint)address;
        return popped == CudaError.CUDA_SUCCESS ? RegistrarResult.Success : Failure("cuCtxPopCurrent", popped);
    }

    /// <summary>The call, the error's name and code, and the driver's description of it.</summary>
    private static RegistrarResult Failure(string call, CudaError error) =>
        new((int)error, $"{call} returned {error} ({(int)error}): {CudaAPI.CurrentAPI.GetErrorString(error)}");
}
