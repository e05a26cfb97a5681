namespace GpuExclusive.Tests.Device;

/// <summary>Device-resident pages on ILGPU's CPU accelerator (a separate accelerator buffer).</summary>
[Collection(DeviceCollection.Name)]
public sealed class CpuAcceleratorResidentPagesTests(CpuAcceleratorFixture fixture)
    : DeviceResidentPagesContract(fixture), IClassFixture<CpuAcceleratorFixture>
{
}
