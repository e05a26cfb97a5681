namespace GpuExclusive.Tests.Device;

/// <summary>The device-exclusive contract on ILGPU's CPU accelerator.</summary>
[Collection(DeviceCollection.Name)]
public sealed class CpuAcceleratorDeviceTests(CpuAcceleratorFixture fixture)
    : DeviceExclusiveContract(fixture), IClassFixture<CpuAcceleratorFixture>
{
}
