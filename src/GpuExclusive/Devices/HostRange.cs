namespace GpuExclusive.Devices;

/// <summary>
/// A range of host memory, <c>[Pointer, Pointer + Bytes)</c>, as the pinned-host registry keys it: two ranges are the
/// same registration only if both start and length match, since CUDA unregisters by base address alone.
/// </summary>
/// <remarks>
/// Overlap is judged by bytes. The driver pins whole pages, so two ranges that share a page without sharing a byte
/// would pass this check and be refused by the driver itself; every range GpuExclusive pins is page-aligned and a
/// whole number of pages (the pool, and <see cref="HostMappedArray{T}"/>'s page-rounded allocations).
/// </remarks>
internal readonly record struct HostRange(nint Pointer, long Bytes)
{
    /// <summary>The first address past the range.</summary>
    internal ulong End => Start + (ulong)Bytes;

    internal ulong Start => (ulong)Pointer;

    /// <summary>True when the two ranges share at least one byte.</summary>
    internal bool Overlaps(HostRange other) => Start < other.End && other.Start < End;

    /// <summary>Throws unless the range is non-empty, starts at a non-null address and does not wrap around.</summary>
    internal void Validate()
    {
        if (Pointer == 0)
        {
            throw new ArgumentException("a pinned host range cannot start at the null pointer", nameof(Pointer));
        }

        if (Bytes <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Bytes), Bytes, "a pinned host range must have a positive length");
        }

        if ((ulong)Bytes > ulong.MaxValue - Start)
        {
            throw new ArgumentOutOfRangeException(nameof(Bytes), Bytes, $"range 0x{Start:x} + 0x{Bytes:x} runs past the end of the address space");
        }
    }

    public override string ToString() => $"[0x{Start:x}, 0x{End:x})";
}
