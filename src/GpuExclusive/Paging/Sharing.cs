namespace GpuExclusive;

/// <summary>Whether a mapping is copied on write across <see cref="AddressSpace.Fork"/> or shared.</summary>
public enum Sharing
{
    /// <summary>Private anonymous memory (<c>MAP_PRIVATE|MAP_ANONYMOUS</c>): copy-on-write after fork.</summary>
    Private,
    /// <summary>Shared anonymous memory (<c>MAP_SHARED|MAP_ANONYMOUS</c>): parent and child see each other's writes.</summary>
    Shared,
}
