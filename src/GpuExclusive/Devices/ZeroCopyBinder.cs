using GpuExclusive.Diagnostics;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuExclusive.Devices;

/// <summary>
/// Gives an accelerator a view of host memory without copying it: the page pool and the small host/device shared
/// structures (device page table, op lists, control block). A backend that cannot do this is refused, never
/// emulated with copies behind the user's back.
/// </summary>
internal abstract class ZeroCopyBinder
{
    /// <summary>A byte-granular buffer over <c>[pointer, pointer + bytes)</c>; dispose it before freeing the memory.</summary>
    internal abstract MemoryBuffer Bind(IntPtr pointer, long bytes);

    /// <summary>The binder of <paramref name="accelerator"/>, logging nowhere.</summary>
    internal static ZeroCopyBinder For(Accelerator accelerator) => For(accelerator, NullLoggerFactory.Instance);

    /// <summary>
    /// The binder of <paramref name="accelerator"/>. CUDA bindings log through <paramref name="loggerFactory"/> the
    /// driver errors their disposal meets and cannot throw (see <see cref="PinnedHostLease"/>).
    /// </summary>
    internal static ZeroCopyBinder For(Accelerator accelerator, ILoggerFactory loggerFactory) => accelerator switch
    {
        CPUAccelerator cpu => new CpuBinder(cpu),
        CudaAccelerator cuda => new CudaBinder(cuda, EngineLoggers.Create<PinnedHostRegistry>(loggerFactory)),
        _ => throw new NotSupportedException(
            $"{accelerator.AcceleratorType} device {accelerator.Name}: ILGPU offers no zero-copy view of host memory on this backend, and GpuExclusive does not copy pages behind your back"),
    };

    private sealed class CpuBinder(CPUAccelerator accelerator) : ZeroCopyBinder
    {
        // CPUMemoryBuffer.Create over a pointer wraps it; disposing the wrapper leaves the memory alone.
        internal override MemoryBuffer Bind(IntPtr pointer, long bytes) => CPUMemoryBuffer.Create(accelerator, pointer, bytes, 1);
    }

    private sealed class CudaBinder(CudaAccelerator accelerator, ILogger logger) : ZeroCopyBinder
    {
        // Pinned through the process-wide registry: several devices may bind the same pool.
        internal override MemoryBuffer Bind(IntPtr pointer, long bytes) =>
            new CudaHostMappedBuffer(accelerator, pointer, bytes, PinnedHostRegistry.Shared, logger);
    }
}
