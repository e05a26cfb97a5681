namespace GpuExclusive.Cli.Stress;

/// <summary>
/// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator whose sequence is fixed by its seed on every runtime and
/// platform, unlike <see cref="Random"/>, whose algorithm may change. Not thread-safe: one per thread.
/// </summary>
internal struct SplitMix64(ulong state)
{
    private ulong _state = state;

    /// <summary>The generator for thread <paramref name="thread"/> of a run seeded with <paramref name="seed"/>.</summary>
    public static SplitMix64 ForThread(int seed, int thread) =>
        new(((ulong)(uint)seed << 32) ^ ((ulong)(thread + 1) * 0xD1B54A32D192ED03UL));

    public ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, <paramref name="maxExclusive"/>) by multiply-shift (no modulo bias worth noticing).</summary>
    public int NextInt(int maxExclusive) => (int)(((Next() >> 32) * (ulong)maxExclusive) >> 32);
}
