using System.Globalization;

namespace GpuExclusive.Workloads;

/// <summary>
/// Engine metadata per 4 KiB page (DESIGN §7: ≤ 32 bytes): the declared per-frame struct plus one PTE, and what the
/// engine actually keeps on the managed heap per page (pool bookkeeping, page-table leaves, a fork's child).
/// </summary>
/// <remarks>
/// Frame memory itself is <c>mmap</c>ed, not managed, so the managed heap holds only metadata — except the PTEs of
/// the fast span, which live in the page table's flat native array (8 B per page mapped, added below). "Retained" is the
/// growth of the live heap after a full collection (<see cref="GC.GetTotalMemory(bool)"/>); "allocated" is every
/// managed allocation on this thread (<see cref="GC.GetAllocatedBytesForCurrentThread"/>), garbage included.
/// </remarks>
internal static class MetadataReport
{
    /// <summary>What the engine declares per page: <see cref="PagePool.MetadataBytesPerFrame"/> plus one 8-byte PTE.</summary>
    internal static int DeclaredBytesPerPage => PagePool.MetadataBytesPerFrame + sizeof(long);

    /// <summary>Linux's figure for the same: a 64-byte <c>struct page</c> plus one 8-byte PTE.</summary>
    internal const int LinuxBytesPerPage = 64 + 8;

    private const int Pages = 16384; // 64 MiB: large enough that fixed costs vanish in the per-page figure

    internal static void Print(TextWriter output)
    {
        var declared = DeclaredBytesPerPage;
        WarmUp();

        var (poolLive, poolAllocated) = Measure(() => new PagePool(Pages + 64, lockMemory: false), out var pool);
        using (pool)
        {
            var (spaceLive, _) = Measure(() => new AddressSpace(pool), out var space);
            using (space)
            {
                var address = space.Map((ulong)Pages * PagePool.PageSize, Protection.ReadWrite);
                // Demand-zero every page: creates the page-table leaves and the per-frame reverse-map entries.
                var (tableLive, tableAllocated) = Measure(() => Touch(space, address), out _);
                var (forkLive, forkAllocated) = Measure(space.Fork, out var child);
                child.Dispose();

                static string PerPage(long bytes) => ((double)bytes / Pages).ToString("F1", CultureInfo.InvariantCulture);
                output.WriteLine("Metadata per 4 KiB page (DESIGN §7 target: <= 32 bytes)");
                output.WriteLine($"  declared: PagePool.MetadataBytesPerFrame {PagePool.MetadataBytesPerFrame} B + PTE 8 B = {declared} B");
                // The touched pages' PTEs fill whole 4 KiB pages of the flat array, plus one sequence count per leaf.
                var flatPtes = ((long)Pages * sizeof(long)) + ((long)Pages / 512 * sizeof(long));
                output.WriteLine($"  retained, {Pages} pages: pool {PerPage(poolLive)} B/frame + page table {PerPage(tableLive + spaceLive)} B/page " +
                                 $"on the managed heap + {PerPage(flatPtes)} B/page of flat PTEs in native memory = " +
                                 $"{PerPage(poolLive + tableLive + spaceLive + flatPtes)} B/page; a forked child adds {PerPage(forkLive)} B/page " +
                                 "on the managed heap (and its own PTEs) while it lives");
                output.WriteLine($"  allocated (garbage included): pool {PerPage(poolAllocated)} B/frame, " +
                                 $"demand-zero faults {PerPage(tableAllocated)} B/page, fork {PerPage(forkAllocated)} B/page");
                output.WriteLine();
            }
        }
    }

    /// <summary>
    /// Runs every measured step once on a tiny space first, so one-time process-wide allocations (the software TLB's
    /// 4096 pinned per-thread slots, about 0.5 MiB; static tables; JIT-time allocations) are not charged to the pages.
    /// </summary>
    private static void WarmUp()
    {
        using var pool = new PagePool(64, lockMemory: false);
        using var space = new AddressSpace(pool);
        var address = space.Map(16 * PagePool.PageSize, Protection.ReadWrite);
        for (var i = 0; i < 16; i++)
        {
            space.Write(address + ((ulong)i * PagePool.PageSize), i);
        }

        space.Fork().Dispose();
    }

    private static int Touch(AddressSpace space, ulong address)
    {
        for (var i = 0; i < Pages; i++)
        {
            space.Write(address + ((ulong)i * PagePool.PageSize), i);
        }

        return Pages;
    }

    private static (long Live, long Allocated) Measure<T>(Func<T> step, out T result)
    {
        var live = GC.GetTotalMemory(forceFullCollection: true);
        var allocated = GC.GetAllocatedBytesForCurrentThread();
        result = step();
        var allocatedAfter = GC.GetAllocatedBytesForCurrentThread();
        var liveAfter = GC.GetTotalMemory(forceFullCollection: true);
        GC.KeepAlive(result);
        return (liveAfter - live, allocatedAfter - allocated);
    }
}
