namespace GpuExclusive.Memory;

/// <summary>
/// Reverse map from a frame to the (address space, virtual page) pairs whose PTEs map it — Linux's rmap, kept
/// small: the common single mapping lives inline in <see cref="FrameMeta.Rmap"/> (8 bytes per frame); frames
/// shared after fork spill into a per-stripe side table.
/// </summary>
/// <remarks>
/// An entry packs <c>spaceId &lt;&lt; 36 | virtualPage</c> (35 bits cover the 47-bit virtual space). Each stripe lock
/// guards the inline words of its frames and its side table; no other lock is taken inside it.
/// </remarks>
internal sealed class ReverseMap
{
    internal const long Overflowed = -1;
    private const int VirtualPageBits = 36;
    private const int StripeCount = 64;

    private readonly FrameMeta[] _meta;
    private readonly Lock[] _stripes = new Lock[StripeCount];
    // Per stripe: frame → its mappings, for frames with more than one (guarded by the stripe's lock).
    private readonly Dictionary<long, List<long>>[] _overflow = new Dictionary<long, List<long>>[StripeCount];

    internal ReverseMap(FrameMeta[] meta)
    {
        _meta = meta;
        for (var i = 0; i < StripeCount; i++)
        {
            _stripes[i] = new Lock();
            _overflow[i] = [];
        }
    }

    internal static long Encode(int spaceId, ulong virtualPage) => ((long)spaceId << VirtualPageBits) | (long)virtualPage;

    internal void Add(long frame, int spaceId, ulong virtualPage)
    {
        var entry = Encode(spaceId, virtualPage);
        var stripe = (int)(frame % StripeCount);
        lock (_stripes[stripe])
        {
            ref var inline = ref _meta[frame].Rmap;
            if (inline == 0)
            {
                inline = entry;
            }
            else if (inline == Overflowed)
            {
                _overflow[stripe][frame].Add(entry);
            }
            else
            {
                _overflow[stripe][frame] = [inline, entry];
                inline = Overflowed;
            }
        }
    }

    internal void Remove(long frame, int spaceId, ulong virtualPage)
    {
        var entry = Encode(spaceId, virtualPage);
        var stripe = (int)(frame % StripeCount);
        lock (_stripes[stripe])
        {
            ref var inline = ref _meta[frame].Rmap;
            if (inline == entry)
            {
                inline = 0;
                return;
            }

            System.Diagnostics.Debug.Assert(inline == Overflowed, "rmap: removing a mapping the frame does not have");
            if (inline != Overflowed)
            {
                return;
            }

            var list = _overflow[stripe][frame];
            var removed = list.Remove(entry);
            System.Diagnostics.Debug.Assert(removed, "rmap: removing a mapping the frame does not have");
            if (list.Count == 1)
            {
                inline = list[0];
                _overflow[stripe].Remove(frame);
            }
        }
    }

    /// <summary>The mappings of <paramref name="frame"/> now (a copy).</summary>
    internal List<long> Snapshot(long frame)
    {
        var stripe = (int)(frame % StripeCount);
        lock (_stripes[stripe])
        {
            var inline = _meta[frame].Rmap;
            return inline switch
            {
                0 => [],
                Overflowed => [.. _overflow[stripe][frame]],
                _ => [inline],
            };
        }
    }
}
