using System.Runtime.CompilerServices;

namespace GpuExclusive;

/// <summary>
/// An engine-owned interval notifier whose owner answers through two static functions, called directly: the device
/// mirror's notifier is on every revocation's path, where a virtual call per revocation cost measurably without
/// profile data. The notifier layer defines the shape and the device layer fills it in, so the dependency points down
/// (docs/architecture.md, "layers").
/// </summary>
internal sealed unsafe class DirectIntervalNotifier : MmuIntervalNotifier
{
    private readonly object _owner;
    private readonly delegate*<object, in NotifierRange, bool> _ignores;
    private readonly delegate*<object, in NotifierRange, void> _invalidate;

    /// <param name="owner">Passed back to both functions.</param>
    /// <param name="ignores">The owner's <see cref="MmuIntervalNotifier.Ignores"/>.</param>
    /// <param name="invalidate">The owner's <see cref="MmuIntervalNotifier.Invalidate"/>.</param>
    internal DirectIntervalNotifier(object owner, delegate*<object, in NotifierRange, bool> ignores, delegate*<object, in NotifierRange, void> invalidate)
        : base(engineOwned: true)
    {
        _owner = owner;
        _ignores = ignores;
        _invalidate = invalidate;
    }

    /// <summary>The owner's answer, without a virtual call.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool IgnoresDirectly(in NotifierRange range) => _ignores(_owner, range);

    /// <summary>The owner's callback, without a virtual call.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void InvalidateDirectly(in NotifierRange range) => _invalidate(_owner, range);

    protected override bool Ignores(in NotifierRange range) => IgnoresDirectly(range);

    protected override void Invalidate(in NotifierRange range) => InvalidateDirectly(range);
}
