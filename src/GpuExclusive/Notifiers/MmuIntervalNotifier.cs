namespace GpuExclusive;

/// <summary>An interval notifier with a sequence count (Linux <c>mmu_interval_notifier</c>).</summary>
public abstract class MmuIntervalNotifier
{
    public long ReadBegin() => throw new NotImplementedException();
    public bool ReadRetry(long sequence) => throw new NotImplementedException();
    protected virtual bool Ignores(in NotifierRange range) => false;
    protected abstract void Invalidate(in NotifierRange range);
}
