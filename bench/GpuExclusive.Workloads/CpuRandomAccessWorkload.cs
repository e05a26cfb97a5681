using System.Runtime.InteropServices;

namespace GpuExclusive.Workloads;

/// <summary>
/// Single-int CPU access through the software MMU on present pages (DESIGN §7: random single int ≤ 3× a raw pointer).
/// Region: 1024 pages = 4 MiB, every page populated (present, young and dirty) here, so no access faults. The baseline
/// does the same access sequence on a raw <c>int*</c> over 4 MiB of <see cref="NativeMemory.AlignedAlloc"/>.
/// </summary>
/// <remarks>
/// Each operation copies the fields it uses into locals first: the engine's volatile reads would make the JIT reload a
/// field on every access, and the raw loop would not pay the same.
/// </remarks>
internal sealed unsafe class CpuRandomAccessWorkload : IDisposable
{
    internal const int Pages = 1024;
    internal const int Ints = Pages * PagePool.PageSize / sizeof(int);

    /// <summary>Accesses per operation.</summary>
    internal const int Ops = 4096;

    internal CpuRandomAccessWorkload()
    {
        Pool = new PagePool(Pages);
        Space = new AddressSpace(Pool);
        Base = Space.Map((ulong)Pages * PagePool.PageSize, Protection.ReadWrite);
        Raw = (int*)NativeMemory.AlignedAlloc((nuint)Pages * PagePool.PageSize, PagePool.PageSize);
        for (var i = 0; i < Ints; i++)
        {
            // Populate every page (demand-zero happens here, not in the measurement) and give both the same contents.
            Space.Write(Base + ((ulong)i * sizeof(int)), i);
            Raw[i] = i;
        }

        // The same random int indices for engine and baseline (fixed seed: every run walks the same sequence).
        var rng = new Random(12345);
        Random = new int[Ops];
        for (var i = 0; i < Ops; i++)
        {
            Random[i] = rng.Next(Ints);
        }
    }

    internal PagePool Pool { get; }

    internal AddressSpace Space { get; }

    /// <summary>The region's first address in <see cref="Space"/>.</summary>
    internal ulong Base { get; }

    /// <summary>The baseline's 4 MiB, with the same contents.</summary>
    internal int* Raw { get; }

    /// <summary>The int indices the random operations visit, in order.</summary>
    internal int[] Random { get; }

    internal int RawRandomRead()
    {
        var raw = Raw;
        var sum = 0;
        foreach (var index in Random)
        {
            sum += raw[index];
        }

        return sum;
    }

    internal int EngineRandomRead()
    {
        var space = Space;
        var at = Base;
        var sum = 0;
        foreach (var index in Random)
        {
            sum += space.Read<int>(at + ((ulong)index << 2));
        }

        return sum;
    }

    internal void RawRandomWrite()
    {
        var raw = Raw;
        foreach (var index in Random)
        {
            raw[index] = index;
        }
    }

    internal void EngineRandomWrite()
    {
        var space = Space;
        var at = Base;
        foreach (var index in Random)
        {
            space.Write(at + ((ulong)index << 2), index);
        }
    }

    // Sequential: 4096 consecutive ints (16 KiB, 4 pages) — the best case for both, measuring the per-access path.
    internal int RawSequentialRead()
    {
        var raw = Raw;
        var sum = 0;
        for (var i = 0; i < Ops; i++)
        {
            sum += raw[i];
        }

        return sum;
    }

    internal int EngineSequentialRead()
    {
        var space = Space;
        var at = Base;
        var sum = 0;
        for (var i = 0; i < Ops; i++)
        {
            sum += space.Read<int>(at + ((ulong)i << 2));
        }

        return sum;
    }

    internal void RawSequentialWrite()
    {
        var raw = Raw;
        for (var i = 0; i < Ops; i++)
        {
            raw[i] = i;
        }
    }

    internal void EngineSequentialWrite()
    {
        var space = Space;
        var at = Base;
        for (var i = 0; i < Ops; i++)
        {
            space.Write(at + ((ulong)i << 2), i);
        }
    }

    public void Dispose()
    {
        Space.Dispose();
        Pool.Dispose();
        NativeMemory.AlignedFree(Raw);
    }
}
