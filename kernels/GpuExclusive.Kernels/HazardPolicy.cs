namespace GpuExclusive.Kernels;

/// <summary>Whether a batch kernel publishes hazard words (a compile-time choice: the struct is a generic argument).</summary>
internal interface IHazardPolicy
{
    /// <summary>True to publish the slot in the thread's hazard word before reading its entry.</summary>
    bool Publishes { get; }
}

/// <summary>The engine's kernels: revocations may clear entries under them, so they publish hazard words.</summary>
internal readonly struct PublishHazards : IHazardPolicy
{
    /// <inheritdoc/>
    public bool Publishes => true;
}

/// <summary>The raw baseline: nothing revokes pages under it.</summary>
internal readonly struct NoHazards : IHazardPolicy
{
    /// <inheritdoc/>
    public bool Publishes => false;
}
