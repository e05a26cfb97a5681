namespace GpuExclusive.Memory;

/// <summary>Per-frame flags (a subset of Linux folio flags).</summary>
[Flags]
internal enum FrameFlags
{
    None = 0,
    /// <summary>Anonymous memory of a private mapping (<c>folio_test_anon</c>).</summary>
    Anon = 1 << 0,
    /// <summary>Known to be mapped by exactly one address space: may be made writable without COW (<c>PageAnonExclusive</c>).</summary>
    AnonExclusive = 1 << 1,
    /// <summary>Contents differ from what a fresh frame would hold and were written since (<c>folio_test_dirty</c>).</summary>
    Dirty = 1 << 2,
    /// <summary>Mapped by an mlocked mapping (<c>folio_test_mlocked</c>).</summary>
    Mlocked = 1 << 3,
}
