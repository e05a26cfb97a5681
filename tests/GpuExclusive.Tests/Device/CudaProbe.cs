using ILGPU;
using ILGPU.Runtime.Cuda;

namespace GpuExclusive.Tests.Device;

/// <summary>Whether ILGPU finds a CUDA device on this machine, asked once per test run.</summary>
internal static class CudaProbe
{
    private static readonly Lazy<int> DeviceCount = new(CountDevices);

    /// <summary>True when ILGPU lists at least one CUDA device.</summary>
    internal static bool HasDevice => DeviceCount.Value > 0;

    private static int CountDevices()
    {
        try
        {
            using var context = Context.Create(builder => builder.Cuda());
            return context.GetCudaDevices().Count;
        }
        catch (Exception ex) when (ex is DllNotFoundException or TypeInitializationException or NotSupportedException or InvalidOperationException)
        {
            return 0; // no driver at all: no device
        }
    }
}
