namespace GpuExclusive.Tests.Device;

/// <summary>The device-exclusive contract on the first CUDA GPU with device-resident pages; skipped, with the reason, where there is none.</summary>
[RequiresCuda]
[Collection(DeviceCollection.Name)]
public sealed class CudaResidentDeviceTests(CudaFixture fixture)
    : DeviceExclusiveContract(fixture, PagePlacement.DeviceResident), IClassFixture<CudaFixture>
{
}
