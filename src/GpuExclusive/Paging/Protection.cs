namespace GpuExclusive;

/// <summary>Access a mapping allows, as <c>PROT_READ</c>/<c>PROT_WRITE</c>.</summary>
[Flags]
public enum Protection
{
    /// <summary>No access (<c>PROT_NONE</c>).</summary>
    None = 0,
    /// <summary>Readable.</summary>
    Read = 1,
    /// <summary>Writable. A mapping that is writable is readable too.</summary>
    Write = 2,
    /// <summary>Readable and writable.</summary>
    ReadWrite = Read | Write,
}
