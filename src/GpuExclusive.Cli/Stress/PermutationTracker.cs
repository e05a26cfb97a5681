namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The old values a dedicated counter returned to its <c>Add(1)</c> ops. Exactly-once (docs/architecture.md, invariant 4) means they are
/// a permutation of 0..n-1: a duplicate is caught the moment it arrives, a gap at the end. One bit per value.
/// </summary>
internal sealed class PermutationTracker
{
    private ulong[] _seen = new ulong[1024];
    private long _count;
    private long _max = -1;

    public long Count => Volatile.Read(ref _count);

    /// <summary>Records <paramref name="oldValue"/>; returns a description of the violation, or null.</summary>
    public string? Add(long oldValue)
    {
        if (oldValue < 0 || oldValue >= int.MaxValue)
            return $"old value {oldValue} is outside 0..{int.MaxValue - 1}";
        long word = oldValue >> 6;
        if (word >= _seen.Length)
            Array.Resize(ref _seen, (int)Math.Max(word + 1, _seen.Length * 2L));
        ulong bit = 1UL << (int)(oldValue & 63);
        if ((_seen[word] & bit) != 0)
            return $"old value {oldValue} was returned twice (an op applied more than once, or two ops saw the same value)";
        _seen[word] |= bit;
        Volatile.Write(ref _count, _count + 1);
        _max = Math.Max(_max, oldValue);
        return null;
    }

    /// <summary>After the run: the values seen must be exactly 0..Count-1 and the counter must read Count.</summary>
    public string? Finish(int finalValue)
    {
        if (_max != _count - 1)
            return $"{_count} ops returned distinct old values up to {_max}: {(_max + 1) - _count} value(s) missing (an op lost)";
        if (finalValue != _count)
            return $"the counter reads {finalValue} after {_count} completed Add(1) ops";
        return null;
    }
}
