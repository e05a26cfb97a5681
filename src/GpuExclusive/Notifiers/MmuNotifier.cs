namespace GpuExclusive;

/// <summary>
/// Receives every invalidation of an address space (Linux <c>mmu_notifier_ops.invalidate_range_start/end</c>).
/// </summary>
public abstract class MmuNotifier
{
    protected internal virtual void InvalidateStart(in NotifierRange range) { }
    protected internal virtual void InvalidateEnd(in NotifierRange range) { }
}
