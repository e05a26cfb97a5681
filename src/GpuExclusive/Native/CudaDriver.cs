using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU.Runtime.Cuda;

namespace GpuExclusive.Native;

/// <summary>
/// P/Invoke for the CUDA driver calls the pinned-host registry needs and ILGPU's <c>CudaAPI</c> does not expose
/// (<c>cuda.h</c>): primary contexts, the context stack, and host registration done inside a context of our choosing.
/// </summary>
/// <remarks>
/// Nothing here loads the driver until one of these functions is first called, which happens only when a CUDA
/// accelerator binds host memory: on a machine without CUDA the library is never looked for. The driver is found by
/// its soname <c>libcuda.so.1</c> (installed with every Linux driver; the unversioned <c>libcuda.so</c> that ILGPU's
/// <c>"cuda"</c> probes for comes with development packages, not always with the driver), else <c>libcuda.so</c>;
/// on Windows it is <c>nvcuda.dll</c>, as ILGPU names it. Both loads of the same file give the same library, so the
/// calls here and ILGPU's act on the same driver state.
/// </remarks>
internal static partial class CudaDriver
{
    /// <summary>The name the imports below use; <see cref="Resolve"/> maps it to the platform's driver library.</summary>
    private const string Library = "cuda";

    /// <summary><c>CU_MEMHOSTREGISTER_PORTABLE</c>: the memory counts as pinned for every CUDA context, not only the registering one.</summary>
    internal const uint MemHostRegisterPortable = 0x01;
    /// <summary><c>CU_MEMHOSTREGISTER_DEVICEMAP</c>: the memory is mapped into the CUDA address space.</summary>
    internal const uint MemHostRegisterDeviceMap = 0x02;

    // A static constructor rather than a module initializer: the resolver is installed only when CUDA is first used.
    // It is this assembly's only resolver and answers only for Library, so libc and the rest resolve as before.
    static CudaDriver() => NativeLibrary.SetDllImportResolver(typeof(CudaDriver).Assembly, Resolve);

    /// <summary><c>cuDeviceGet</c>: the device handle of ordinal <paramref name="ordinal"/>.</summary>
    [LibraryImport(Library, EntryPoint = "cuDeviceGet")]
    internal static partial CudaError DeviceGet(out int device, int ordinal);

    /// <summary><c>cuDevicePrimaryCtxRetain</c>: retains (creating it on first retain) the device's primary context.</summary>
    [LibraryImport(Library, EntryPoint = "cuDevicePrimaryCtxRetain")]
    internal static partial CudaError DevicePrimaryCtxRetain(out nint context, int device);

    /// <summary><c>cuDevicePrimaryCtxRelease_v2</c>: releases one retain; the last release destroys the primary context.</summary>
    [LibraryImport(Library, EntryPoint = "cuDevicePrimaryCtxRelease_v2")]
    internal static partial CudaError DevicePrimaryCtxRelease(int device);

    /// <summary><c>cuCtxPushCurrent_v2</c>: makes <paramref name="context"/> current on this thread, above the one that was.</summary>
    [LibraryImport(Library, EntryPoint = "cuCtxPushCurrent_v2")]
    internal static partial CudaError CtxPushCurrent(nint context);

    /// <summary><c>cuCtxPopCurrent_v2</c>: pops this thread's current context; the one below it becomes current again.</summary>
    [LibraryImport(Library, EntryPoint = "cuCtxPopCurrent_v2")]
    internal static partial CudaError CtxPopCurrent(out nint context);

    /// <summary><c>cuMemHostRegister_v2</c>: page-locks <c>[pointer, pointer + bytes)</c> and maps it as <paramref name="flags"/> say.</summary>
    [LibraryImport(Library, EntryPoint = "cuMemHostRegister_v2")]
    internal static partial CudaError MemHostRegister(nint pointer, nuint bytes, uint flags);

    /// <summary><c>cuMemHostUnregister</c>: undoes the registration whose base address is <paramref name="pointer"/>.</summary>
    [LibraryImport(Library, EntryPoint = "cuMemHostUnregister")]
    internal static partial CudaError MemHostUnregister(nint pointer);

    /// <summary>
    /// <c>cuMemHostGetDevicePointer_v2</c>: the device address of registered host memory in the current context
    /// (<paramref name="flags"/> must be 0). The address is a <c>CUdeviceptr</c>, an <c>unsigned long long</c>.
    /// </summary>
    [LibraryImport(Library, EntryPoint = "cuMemHostGetDevicePointer_v2")]
    internal static partial CudaError MemHostGetDevicePointer(out ulong devicePointer, nint hostPointer, uint flags);

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != Library)
        {
            return 0; // not ours: the runtime's default probing
        }

        if (OperatingSystem.IsWindows())
        {
            return NativeLibrary.TryLoad("nvcuda", assembly, searchPath, out var windows) ? windows : 0;
        }

        return NativeLibrary.TryLoad("libcuda.so.1", assembly, searchPath, out var handle)
            || NativeLibrary.TryLoad("libcuda.so", assembly, searchPath, out handle)
            ? handle
            : 0; // the runtime then probes "cuda" itself and throws DllNotFoundException naming it
    }
}
