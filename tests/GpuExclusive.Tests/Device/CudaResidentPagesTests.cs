namespace GpuExclusive.Tests.Device;

/// <summary>Device-resident pages in a CUDA GPU's memory; skipped, with the reason, where there is none.</summary>
[RequiresCuda]
[Collection(DeviceCollection.Name)]
public sealed class CudaResidentPagesTests(CudaFixture fixture)
    : DeviceResidentPagesContract(fixture), IClassFixture<CudaFixture>
{
}
