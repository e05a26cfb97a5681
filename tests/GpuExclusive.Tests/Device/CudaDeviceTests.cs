namespace GpuExclusive.Tests.Device;

/// <summary>The device-exclusive contract on the first CUDA GPU; every test is skipped, with the reason, where there is none.</summary>
[RequiresCuda]
[Collection(DeviceCollection.Name)]
public sealed class CudaDeviceTests(CudaFixture fixture)
    : DeviceExclusiveContract(fixture), IClassFixture<CudaFixture>
{
}
