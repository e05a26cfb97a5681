namespace GpuExclusive;

/// <summary>Outcome of a device read or write through a mirror.</summary>
public enum DeviceStatus
{
    /// <summary>The access completed.</summary>
    Ok,
    /// <summary>No mapping covers the address.</summary>
    NotMapped,
    /// <summary>The mapping forbids the access (e.g. a write to a read-only mapping).</summary>
    PermissionDenied,
}
