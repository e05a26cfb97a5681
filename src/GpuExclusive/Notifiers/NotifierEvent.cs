namespace GpuExclusive;

/// <summary>Why an invalidation fired (Linux <c>enum mmu_notifier_event</c>).</summary>
public enum NotifierEvent
{
    /// <summary>The range is being unmapped (<c>MMU_NOTIFY_UNMAP</c>).</summary>
    Unmap,
    /// <summary>PTEs are being cleared or replaced: discard, COW break, device-exclusive restore (<c>MMU_NOTIFY_CLEAR</c>).</summary>
    Clear,
    /// <summary>Permissions are being reduced: protect, fork write-protecting private pages (<c>MMU_NOTIFY_PROTECTION_VMA/PAGE</c>).</summary>
    Protection,
    /// <summary>A device is converting PTEs to device-exclusive entries; <see cref="NotifierRange.Owner"/> is that device (<c>MMU_NOTIFY_EXCLUSIVE</c>).</summary>
    Exclusive,
    /// <summary>The address space is being torn down (<c>MMU_NOTIFY_RELEASE</c>).</summary>
    Release,
    /// <summary>Soft-dirty bits are being cleared and pages write-protected (<c>MMU_NOTIFY_SOFT_DIRTY</c>).</summary>
    SoftDirty,
}
