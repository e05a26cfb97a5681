namespace GpuExclusive;

/// <summary>
/// What an access the address space was asked about would meet: the space's own answer, which the device layer turns
/// into its public <see cref="DeviceStatus"/> (the space does not know devices).
/// </summary>
internal enum AccessStatus
{
    /// <summary>Mapped, and the mapping allows the access.</summary>
    Ok,

    /// <summary>No mapping covers the address.</summary>
    NotMapped,

    /// <summary>A mapping covers it but forbids the access (or, for atomics, is not a private writable mapping).</summary>
    PermissionDenied,
}
