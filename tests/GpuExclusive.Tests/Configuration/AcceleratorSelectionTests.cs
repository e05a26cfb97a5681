using ILGPU.Runtime;

namespace GpuExclusive.Tests.Configuration;

public sealed class AcceleratorSelectionTests
{
    private static AcceleratorCandidate Cpu(int index) => new(index, AcceleratorKind.Cpu, AcceleratorType.CPU, "CPUAccelerator", long.MaxValue, 16, 16);

    private static AcceleratorCandidate Cuda(int index) => new(index, AcceleratorKind.Cuda, AcceleratorType.Cuda, "H100", 80L << 30, 1024, 270336);

    private static AcceleratorCandidate OpenCL(int index) => new(index, AcceleratorKind.OpenCL, AcceleratorType.OpenCL, "gfx90a", 64L << 30, 256, 28160);

    [Fact]
    public void Auto_PrefersCuda_OverOpenCLAndCpu()
    {
        AcceleratorChoice choice = AcceleratorSelection.Choose(AcceleratorKind.Auto, [Cpu(0), OpenCL(1), Cuda(2)]);

        Assert.Equal(AcceleratorKind.Cuda, choice.Kind);
        Assert.Equal(2, choice.CandidateIndex);
    }

    [Fact]
    public void Auto_SkipsOpenCL_BecauseItCannotMapThePoolZeroCopy()
    {
        AcceleratorChoice choice = AcceleratorSelection.Choose(AcceleratorKind.Auto, [OpenCL(0), Cpu(1)]);

        Assert.Equal(AcceleratorKind.Cpu, choice.Kind);
        Assert.Equal(1, choice.CandidateIndex);
        Assert.Contains("zero-copy", choice.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Auto_FallsBackToCpu_AndSaysWhy()
    {
        AcceleratorChoice choice = AcceleratorSelection.Choose(AcceleratorKind.Auto, [Cpu(0)]);

        Assert.Equal(AcceleratorKind.Cpu, choice.Kind);
        Assert.True(choice.Found);
        Assert.Contains("no Cuda device", choice.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Auto_WithTwoCudaDevices_TakesTheFirst()
    {
        AcceleratorChoice choice = AcceleratorSelection.Choose(AcceleratorKind.Auto, [Cuda(0), Cuda(1)]);

        Assert.Equal(0, choice.CandidateIndex);
    }

    [Fact]
    public void ExplicitCpu_IsHonoured_EvenWithAGpuPresent()
    {
        AcceleratorChoice choice = AcceleratorSelection.Choose(AcceleratorKind.Cpu, [Cuda(0), Cpu(1)]);

        Assert.Equal(AcceleratorKind.Cpu, choice.Kind);
        Assert.Equal(1, choice.CandidateIndex);
    }

    [Fact]
    public void ExplicitCuda_WithoutADevice_IsNotFound()
    {
        AcceleratorChoice choice = AcceleratorSelection.Choose(AcceleratorKind.Cuda, [Cpu(0)]);

        Assert.False(choice.Found);
        Assert.Contains("no Cuda device", choice.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Describe_OnThisMachine_ListsTheCpuAccelerator()
    {
        using var context = ILGPU.Context.Create(builder => builder.AllAccelerators());

        IReadOnlyList<AcceleratorCandidate> candidates = AcceleratorSelection.Describe(context);

        Assert.Contains(candidates, c => c.Kind == AcceleratorKind.Cpu);
        Assert.True(AcceleratorSelection.Choose(AcceleratorKind.Auto, candidates).Found);
    }
}
