namespace GpuExclusive;

/// <summary>
/// Receives every invalidation of an address space (Linux <c>mmu_notifier_ops.invalidate_range_start/end</c>).
/// Register with <see cref="AddressSpace.RegisterNotifier"/>.
/// </summary>
/// <remarks>
/// <see cref="InvalidateStart"/> runs before any PTE in the range changes and may block (a device stops its kernels
/// here); <see cref="InvalidateEnd"/> runs after the change. Both run on the thread doing the change, with the
/// space's mmap lock held (for reading or writing) and, for <see cref="NotifierEvent.Exclusive"/> and for the
/// <see cref="NotifierEvent.Clear"/> of a device-exclusive restore, the frame's page lock; never with a page-table
/// lock. So a callback may call <see cref="AddressSpace.Inspect"/>, but must not map, unmap, fault or fork in the
/// same space, and must not throw; a call that would take the mmap lock for writing, or wait for a writer, throws
/// <see cref="LockRecursionException"/> rather than deadlock.
/// </remarks>
public abstract class MmuNotifier
{
    /// <summary>The range is about to change; device access to it must stop before this returns.</summary>
    protected internal virtual void InvalidateStart(in NotifierRange range)
    {
    }

    /// <summary>The range has changed.</summary>
    protected internal virtual void InvalidateEnd(in NotifierRange range)
    {
    }
}
