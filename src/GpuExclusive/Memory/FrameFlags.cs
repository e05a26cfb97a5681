namespace GpuExclusive.Memory;

/// <summary>Per-frame flags (a subset of Linux folio flags), kept in bits 20–27 of <see cref="FrameMeta.State"/>.</summary>
[Flags]
internal enum FrameFlags
{
    None = 0,
    /// <summary>Anonymous memory of a private mapping (<c>folio_test_anon</c>).</summary>
    Anon = 1 << 20,
    /// <summary>Known to be mapped by exactly one address space: may be made writable without COW (<c>PageAnonExclusive</c>).</summary>
    AnonExclusive = 1 << 21,
    /// <summary>Written through a PTE whose dirty bit moved to the frame when it became device-exclusive (<c>folio_test_dirty</c>).</summary>
    Dirty = 1 << 22,
    /// <summary>Mapped by an mlocked mapping (<c>folio_test_mlocked</c>).</summary>
    Mlocked = 1 << 23,

    /// <summary>Every flag bit.</summary>
    All = Anon | AnonExclusive | Dirty | Mlocked,
}
