namespace GpuExclusive.Tests.Engine;

/// <summary>Pins the library's exported types to the contract of DESIGN §5 (STYLE: the surface must not grow by accident).</summary>
public sealed class PublicSurfaceTests
{
    /// <summary>DESIGN §5, plus the notifier types the engine's <c>RegisterNotifier</c>/<c>InsertIntervalNotifier</c> take.</summary>
    private static readonly HashSet<string> Contract =
    [
        "PagePool", "AddressSpace", "Protection", "Sharing", "PageState", "PageInfo", "MemoryAccessException",
        "AcceleratorKind", "ExclusiveDevice", "DeviceMirror", "DeviceStatus", "AtomicKind", "AtomicOp", "BatchResult",
        "MmuNotifier", "MmuIntervalNotifier", "NotifierRange", "NotifierEvent",
    ];

    [Fact]
    public void Library_ExportsOnlyContractTypes_InTheRootNamespace()
    {
        var exported = typeof(PagePool).Assembly.GetExportedTypes();

        var extra = exported.Where(t => t.Namespace != "GpuExclusive" || !Contract.Contains(t.Name)).Select(t => t.FullName).ToArray();

        Assert.True(extra.Length == 0, "exported types outside DESIGN §5: " + string.Join(", ", extra));
    }

    [Fact]
    public void EngineTypes_AreSealed()
    {
        Assert.True(typeof(PagePool).IsSealed);
        Assert.True(typeof(AddressSpace).IsSealed);
        Assert.True(typeof(MemoryAccessException).IsSealed);
        Assert.True(typeof(MmuNotifier).IsAbstract);
        Assert.True(typeof(MmuIntervalNotifier).IsAbstract);
    }
}
