namespace GpuExclusive.Tests.Device;

/// <summary>The device-exclusive contract on ILGPU's CPU accelerator, with device-resident pages (a separate accelerator buffer).</summary>
[Collection(DeviceCollection.Name)]
public sealed class CpuAcceleratorResidentDeviceTests(CpuAcceleratorFixture fixture)
    : DeviceExclusiveContract(fixture, PagePlacement.DeviceResident), IClassFixture<CpuAcceleratorFixture>
{
}
