namespace GpuExclusive.Kernels;

/// <summary>How a batch kernel publishes hazard words (a compile-time choice: the struct is a generic argument).</summary>
public interface IHazardPolicy
{
    /// <summary>True to publish the slot in the thread's hazard word before reading its entry.</summary>
    bool Publishes { get; }

    /// <summary>
    /// True to fence between publishing the word and reading the entry, and before changing or clearing a published
    /// word (so the atomics applied under it land first); false where every atomic already is a full fence.
    /// </summary>
    bool FencesAfterPublish { get; }
}

/// <summary>The engine's kernels on a GPU: an atomic store is not a fence there, so one follows it.</summary>
public readonly struct PublishHazards : IHazardPolicy
{
    /// <inheritdoc/>
    public bool Publishes => true;

    /// <inheritdoc/>
    public bool FencesAfterPublish => true;
}

/// <summary>
/// The engine's kernels on ILGPU's CPU accelerator, where every ILGPU atomic is a .NET <c>Interlocked</c> operation —
/// a full fence on every platform .NET runs on. The hazard word is a plain store: the entry is read with an atomic
/// right after it, which orders the store before the load, and the atomics applied under the old word are ordered
/// before the store that changes it.
/// </summary>
public readonly struct PublishHazardsInterlocked : IHazardPolicy
{
    /// <inheritdoc/>
    public bool Publishes => true;

    /// <inheritdoc/>
    public bool FencesAfterPublish => false;
}

/// <summary>The raw baseline: nothing revokes pages under it.</summary>
public readonly struct NoHazards : IHazardPolicy
{
    /// <inheritdoc/>
    public bool Publishes => false;

    /// <inheritdoc/>
    public bool FencesAfterPublish => false;
}
