using System.Diagnostics;

namespace GpuExclusive.Workloads;

/// <summary>A read of one page: the revocation and minor-fault workloads touch pages 0..N-1 with one of these.</summary>
internal interface IPageTouch
{
    int Touch(int page);
}

/// <summary>A read of the first byte of a page of raw memory.</summary>
internal readonly unsafe struct RawTouch(byte* pages) : IPageTouch
{
    public int Touch(int page) => pages[page * PagePool.PageSize];
}

/// <summary>A read of the first int of a page through the engine.</summary>
internal readonly struct EngineTouch(AddressSpace space, ulong pages) : IPageTouch
{
    public int Touch(int page) => space.Read<int>(pages + ((ulong)page * PagePool.PageSize));
}

/// <summary>
/// Loops over pages with an <see cref="IPageTouch"/>. Generic over a struct, so the touch is inlined into the loop on
/// both sides of a ratio alike.
/// </summary>
internal static class PageTouches
{
    /// <summary>Touches pages 0..<paramref name="pages"/> - 1 once each.</summary>
    internal static int All<TTouch>(TTouch touch, int pages)
        where TTouch : struct, IPageTouch
    {
        var sum = 0;
        for (var page = 0; page < pages; page++)
        {
            sum += touch.Touch(page);
        }

        return sum;
    }

    /// <summary>
    /// Touches pages 0..<paramref name="pages"/> - 1, timing each touch alone (two timer reads included), and adds ns
    /// per touch to <paramref name="samples"/>: latency distributions, where <see cref="All"/> gives the mean.
    /// </summary>
    internal static int TimeEach<TTouch>(TTouch touch, int pages, List<double> samples)
        where TTouch : struct, IPageTouch
    {
        var sum = 0;
        for (var page = 0; page < pages; page++)
        {
            var start = Stopwatch.GetTimestamp();
            sum += touch.Touch(page);
            var stop = Stopwatch.GetTimestamp();
            samples.Add(Nanoseconds(stop - start));
        }

        return sum;
    }

    internal static double Nanoseconds(long ticks) => ticks * 1e9 / Stopwatch.Frequency;
}
