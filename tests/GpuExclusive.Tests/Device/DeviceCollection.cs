namespace GpuExclusive.Tests.Device;

/// <summary>
/// The device test classes run one after another: their concurrency tests measure contention between the engine's own
/// threads, which two device suites sharing two cores would drown.
/// </summary>
[CollectionDefinition(Name)]
public sealed class DeviceCollection
{
    public const string Name = "Device";
}
