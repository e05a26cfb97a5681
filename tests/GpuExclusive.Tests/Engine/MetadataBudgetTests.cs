namespace GpuExclusive.Tests.Engine;

/// <summary>
/// A target of docs/benchmarks.md: at most 32 bytes of metadata per 4 KiB page. The pool's frame metadata and the 8-byte PTE take 28 of
/// them, so what a space allocates on the managed heap besides must stay within 4 bytes per populated page (at the
/// size the benchmarks' metadata report uses: a space's fixed costs are spread over its pages).
/// </summary>
public sealed class MetadataBudgetTests : EngineTest
{
    private const int Pages = 16384;

    public MetadataBudgetTests()
        : base(Pages)
    {
    }

    [Fact]
    public void FrameMetadataAndPte_Take28Bytes()
    {
        Assert.Equal(28, PagePool.MetadataBytesPerFrame + sizeof(long));
    }

    [Fact]
    public void CreatingAndPopulatingA16384PageSpace_AllocatesAtMost4BytesPerPage_OnTheManagedHeap()
    {
        // Once first: first calls allocate JIT and type data that is not the space's.
        DisposeSpace(CreateAndPopulate());

        var before = GC.GetAllocatedBytesForCurrentThread();
        var space = CreateAndPopulate();
        var perPage = (double)(GC.GetAllocatedBytesForCurrentThread() - before) / Pages;
        DisposeSpace(space);

        Assert.True(perPage <= 4, $"a {Pages}-page space allocated {perPage:F2} B/page on the managed heap (budget 4)");
    }

    private AddressSpace CreateAndPopulate()
    {
        var space = NewSpace();
        var a = space.Map(Pages * Page, Protection.ReadWrite);
        for (var page = 0UL; page < Pages; page++)
        {
            space.Write(a + (page * Page), 1);
        }

        return space;
    }
}
