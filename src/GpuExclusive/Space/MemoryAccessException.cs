namespace GpuExclusive;

/// <summary>
/// A CPU access through the engine that no fault handler could satisfy: the address is unmapped or the
/// mapping forbids the access (the engine's SIGSEGV). Nothing was changed by the failed access.
/// </summary>
public sealed class MemoryAccessException : Exception
{
    /// <summary>Creates the exception for a failed access at <paramref name="address"/>.</summary>
    public MemoryAccessException(ulong address, bool isWrite, string reason)
        : base($"{(isWrite ? "write" : "read")} at 0x{address:x} failed: {reason}")
    {
        Address = address;
        IsWrite = isWrite;
    }

    /// <summary>The virtual address that faulted.</summary>
    public ulong Address { get; }

    /// <summary>True if the access was a write (or an atomic read-modify-write).</summary>
    public bool IsWrite { get; }
}
