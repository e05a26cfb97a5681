namespace GpuExclusive.Tests.Device;

/// <summary>
/// The abstract factory of the device contract: one backend's devices, opened lazily (an open costs about a second:
/// ILGPU context and kernel compile) and shared by every test of a class.
/// </summary>
/// <remarks>
/// Lazy so that a backend whose tests are all skipped (CUDA without a GPU) never opens anything.
/// </remarks>
public abstract class DeviceFixture : IDisposable
{
    private readonly Lazy<ExclusiveDevice> _first;
    private readonly Lazy<ExclusiveDevice> _second;

    protected DeviceFixture()
    {
        _first = new Lazy<ExclusiveDevice>(Open);
        _second = new Lazy<ExclusiveDevice>(Open);
    }

    /// <summary>The backend this fixture opens.</summary>
    public abstract AcceleratorKind Kind { get; }

    /// <summary>The device every test of the class uses.</summary>
    public ExclusiveDevice Device => _first.Value;

    /// <summary>A second device of the same backend, for the two-owner tests.</summary>
    public ExclusiveDevice SecondDevice => _second.Value;

    /// <summary>The settings this fixture opens its devices with.</summary>
    public virtual EngineSettings Settings => new() { Accelerator = Kind };

    /// <summary>A fresh device the caller owns (for tests that dispose it).</summary>
    public ExclusiveDevice Open() => ExclusiveDevice.Open(Settings);

    public void Dispose()
    {
        if (_second.IsValueCreated)
        {
            _second.Value.Dispose();
        }

        if (_first.IsValueCreated)
        {
            _first.Value.Dispose();
        }

        GC.SuppressFinalize(this);
    }
}

/// <summary>ILGPU's CPU accelerator: what CI runs.</summary>
public sealed class CpuAcceleratorFixture : DeviceFixture
{
    public override AcceleratorKind Kind => AcceleratorKind.Cpu;
}

/// <summary>
/// ILGPU's CPU accelerator with launched batches' ops and old values in accelerator memory, as a GPU keeps them
/// (docs/architecture.md, "batch bookkeeping in device memory"): the copies in and out run in CI too.
/// </summary>
public sealed class CpuAcceleratorDeviceBookkeepingFixture : DeviceFixture
{
    public override AcceleratorKind Kind => AcceleratorKind.Cpu;

    public override EngineSettings Settings => new() { Accelerator = Kind, BookkeepingInDeviceMemory = true };
}

/// <summary>The first CUDA GPU.</summary>
public sealed class CudaFixture : DeviceFixture
{
    public override AcceleratorKind Kind => AcceleratorKind.Cuda;
}
