using GpuExclusive.Native;
using GpuExclusive.Tests.Device;
using ILGPU.Runtime.Cuda;

namespace GpuExclusive.Tests.Native;

/// <summary>The CUDA driver binding where there is no CUDA device: its resolver installs cleanly and the call fails plainly.</summary>
public sealed class CudaDriverTests
{
    [NoCudaFact]
    public void WithoutACudaDevice_TheFirstCall_FailsAsADriverError_NotInTheResolver()
    {
        try
        {
            // With a driver but no device the call returns an error code; with no driver the runtime cannot find it.
            Assert.NotEqual(CudaError.CUDA_SUCCESS, CudaDriver.DeviceGet(out _, 0));
        }
        catch (DllNotFoundException missing)
        {
            // Not a TypeInitializationException: installing the resolver worked, and it fell through to "cuda".
            Assert.Contains("cuda", missing.Message, StringComparison.Ordinal);
        }
    }
}
