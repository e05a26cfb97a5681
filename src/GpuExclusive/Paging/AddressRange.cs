namespace GpuExclusive.Paging;

/// <summary>Argument checks shared by every range-taking call (docs/architecture.md, "the public surface and errors"): whole pages, aligned, no overflow.</summary>
internal static class AddressRange
{
    internal const ulong PageMask = PagePool.PageSize - 1;

    /// <summary>Checks <c>[address, address + length)</c> and returns its end.</summary>
    internal static ulong Validate(ulong address, ulong length, string addressName = "address", string lengthName = "length")
    {
        ValidateLength(length, lengthName);
        if ((address & PageMask) != 0)
        {
            throw new ArgumentException($"address 0x{address:x} is not page-aligned (page size {PagePool.PageSize})", addressName);
        }

        if (address >= PageTable.AddressLimit)
        {
            throw new ArgumentOutOfRangeException(addressName, $"address 0x{address:x} is past the end of the 47-bit virtual address space (0x{PageTable.AddressLimit:x})");
        }

        if (length > PageTable.AddressLimit - address)
        {
            throw new ArgumentOutOfRangeException(lengthName, $"range 0x{address:x} + 0x{length:x} runs past the end of the 47-bit virtual address space (0x{PageTable.AddressLimit:x})");
        }

        return address + length;
    }

    internal static void ValidateLength(ulong length, string lengthName = "length")
    {
        if (length == 0)
        {
            throw new ArgumentException("length must not be zero", lengthName);
        }

        if ((length & PageMask) != 0)
        {
            throw new ArgumentException($"length 0x{length:x} is not a whole number of {PagePool.PageSize}-byte pages", lengthName);
        }

        if (length > PageTable.AddressLimit)
        {
            throw new ArgumentOutOfRangeException(lengthName, $"length 0x{length:x} is larger than the whole 47-bit virtual address space");
        }
    }

    internal static void ValidateProtection(Protection protection)
    {
        if ((protection & ~Protection.ReadWrite) != 0)
        {
            throw new ArgumentException($"protection {(int)protection} is not a combination of Read and Write", nameof(protection));
        }
    }
}
