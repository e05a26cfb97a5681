namespace GpuExclusive.Tests.Device;

/// <summary>
/// The device-exclusive contract on ILGPU's CPU accelerator with launched batches' ops and old values in accelerator
/// memory (what a GPU does by default), so that the copies in and out are held to every case.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class CpuAcceleratorDeviceBookkeepingTests(CpuAcceleratorDeviceBookkeepingFixture fixture)
    : DeviceExclusiveContract(fixture), IClassFixture<CpuAcceleratorDeviceBookkeepingFixture>
{
}
