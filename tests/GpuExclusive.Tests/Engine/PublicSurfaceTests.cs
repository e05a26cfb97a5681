namespace GpuExclusive.Tests.Engine;

/// <summary>Pins the library's exported types to the public contract (docs/architecture.md, "the public surface and errors") (STYLE: the surface must not grow by accident).</summary>
public sealed class PublicSurfaceTests
{
    /// <summary>
    /// The public contract, plus the notifier types <c>RegisterNotifier</c>/<c>InsertIntervalNotifier</c> take, plus deliberate
    /// additions (the contract: add to it, don't rename it): the invariant checker embedders and <c>gpux stress</c> run,
    /// the settings embedders load from <c>runtimesettings.json</c> (the README's configuration section), and the prepared batches of
    /// <c>DeviceMirror.Prepare</c> (issue 5), and the failure of a device that stops answering (issue 13),
    /// and device-resident pages (issue 16).
    /// A new public type belongs in this list only on purpose.
    /// </summary>
    private static readonly HashSet<string> Contract =
    [
        "GpuExclusive.PagePool", "GpuExclusive.AddressSpace", "GpuExclusive.Protection", "GpuExclusive.Sharing",
        "GpuExclusive.PageState", "GpuExclusive.PageInfo", "GpuExclusive.MemoryAccessException",
        "GpuExclusive.AcceleratorKind", "GpuExclusive.ExclusiveDevice", "GpuExclusive.DeviceMirror",
        "GpuExclusive.DeviceStatus", "GpuExclusive.AtomicKind", "GpuExclusive.AtomicOp", "GpuExclusive.BatchResult",
        "GpuExclusive.MmuNotifier", "GpuExclusive.MmuIntervalNotifier", "GpuExclusive.NotifierRange", "GpuExclusive.NotifierEvent",
        "GpuExclusive.Diagnostics.InvariantChecker", "GpuExclusive.Diagnostics.InvariantViolationException",
        "GpuExclusive.EngineSettings", "GpuExclusive.EngineSettingsLoader", "GpuExclusive.SettingSource",
        "GpuExclusive.SettingValue", "GpuExclusive.ConfigurationException",
        "GpuExclusive.PreparedBatch", "GpuExclusive.DeviceFailedException",
        "GpuExclusive.PagePlacement",
    ];

    [Fact]
    public void Library_ExportsOnlyContractTypes()
    {
        var exported = typeof(PagePool).Assembly.GetExportedTypes();

        var extra = exported.Select(t => t.FullName!).Where(name => !Contract.Contains(name)).Order().ToArray();

        Assert.True(extra.Length == 0, "public types outside the contract: " + string.Join(", ", extra));
    }

    [Fact]
    public void KernelsAssembly_ExportsNoTypes()
    {
        // Device code, op and PTE encodings, the control block: nothing a user names (the library wraps them all).
        var exported = typeof(GpuExclusive.Kernels.AtomicBatchKernel).Assembly.GetExportedTypes().Select(t => t.FullName!).Order().ToArray();

        Assert.True(exported.Length == 0, "public types in GpuExclusive.Kernels: " + string.Join(", ", exported));
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
