using GpuExclusive.Workloads.Native;

namespace GpuExclusive.Workloads;

/// <summary>
/// The yardstick of DESIGN §7's fault targets: a Linux minor fault, the first touch of each page of a fresh private
/// anonymous mapping (on 4 KiB pages: <c>MADV_NOHUGEPAGE</c>). A read maps the shared zero page; a write allocates and
/// zeroes a page — the kernel doing what the engine's demand-zero fault does.
/// </summary>
/// <remarks>Each touch needs fresh memory: <see cref="MapFresh"/> before, <see cref="Unmap"/> after, both untimed.</remarks>
internal sealed unsafe class MinorFaultWorkload
{
    private nint _linux;

    internal MinorFaultWorkload(int pages)
    {
        AnonymousMemory.RequireLinux();
        Pages = pages;
    }

    /// <summary>Pages touched per operation.</summary>
    internal int Pages { get; }

    private nuint Bytes => (nuint)Pages * PagePool.PageSize;

    internal void MapFresh() => _linux = AnonymousMemory.Map(Bytes, noHugePages: true);

    internal void Unmap()
    {
        AnonymousMemory.Unmap(_linux, Bytes);
        _linux = 0;
    }

    /// <summary>Reads the first byte of every page: <see cref="Pages"/> minor faults.</summary>
    internal int ReadEach() => PageTouches.All(new RawTouch((byte*)_linux), Pages);

    /// <summary><see cref="ReadEach"/>, each fault timed alone (ns per fault into <paramref name="samples"/>).</summary>
    internal int TimeEachRead(List<double> samples) => PageTouches.TimeEach(new RawTouch((byte*)_linux), Pages, samples);

    /// <summary>Writes an int at the start of every page: <see cref="Pages"/> faults that each allocate a zeroed page.</summary>
    internal void WriteEach()
    {
        var bytes = (byte*)_linux;
        for (var i = 0; i < Pages; i++)
        {
            *(int*)(bytes + ((nint)i * PagePool.PageSize)) = i;
        }
    }
}
