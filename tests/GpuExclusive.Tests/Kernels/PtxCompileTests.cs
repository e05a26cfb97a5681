using GpuExclusive.Kernels;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime.Cuda;

namespace GpuExclusive.Tests.Kernels;

/// <summary>
/// The CUDA path without a GPU: the batch kernel must compile to PTX (the CPU accelerator runs kernels as plain .NET
/// code, so only this proves it is valid device code), and the atomics it relies on must be there.
/// </summary>
public sealed class PtxCompileTests
{
    private static readonly Lazy<string> Ptx = new(() => Compile(nameof(AtomicBatchKernel.Apply)));
    private static readonly Lazy<string> ResidentPtx = new(() => Compile(nameof(AtomicBatchKernel.Serve)));

    [Fact]
    public void BatchKernel_CompilesToPtx_ForHopper() => Assert.Contains(".entry", Ptx.Value, StringComparison.Ordinal);

    [Fact]
    public void RawBaselineKernel_CompilesToPtx() =>
        Assert.Contains(".entry", Compile(nameof(AtomicBatchKernel.ApplyWithoutHazards)), StringComparison.Ordinal);

    [Theory]
    [InlineData(".entry")]
    [InlineData("bar.sync")]      // the first thread's doorbell decision reaches the group through a barrier
    [InlineData(".shared")]       // ... and shared memory
    [InlineData("atom.exch.b32")] // hazard words and the Finished report are atomic stores
    [InlineData("fence.sc.sys")]  // the batch's results are published system-wide before Finished says so
    public void ResidentKernel_CompilesToPtx_WithTheExpectedInstruction(string instruction) =>
        Assert.Contains(instruction, ResidentPtx.Value, StringComparison.Ordinal);

    [Theory]
    [InlineData("atom.or.b32")]   // the stop-flag poll is an atomic load, not a plain one a GPU may cache
    [InlineData("atom.add.u32")]  // 32-bit Add (and the fault-buffer index)
    [InlineData("atom.cas.b32")]  // 32-bit CompareExchange
    [InlineData("atom.cas.b64")]  // 64-bit CompareExchange
    [InlineData("atom.exch.b64")] // 64-bit Exchange
    [InlineData("atom.min.s64")]  // signed 64-bit Min
    [InlineData("atom.max.s32")]  // signed 32-bit Max
    [InlineData("atom.xor.b64")]  // 64-bit Xor
    [InlineData("fence.sc.sys")]  // a hazard word is visible system-wide before the thread reads the entry it guards
    public void BatchKernel_Ptx_UsesTheExpectedInstruction(string instruction) =>
        Assert.Contains(instruction, Ptx.Value, StringComparison.Ordinal);

    [Fact]
    public void BatchKernel_Ptx_ReadsDevicePtesAtomically() =>
        Assert.Contains("atom.or.b64", Ptx.Value, StringComparison.Ordinal);

    private static string Compile(string kernelName)
    {
        using var context = Context.Create(builder => builder.Default());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null!);
        var entry = EntryPointDescription.FromExplicitlyGroupedKernel(typeof(AtomicBatchKernel).GetMethod(kernelName)!);
        var kernel = (PTXCompiledKernel)backend.Compile(entry, default);
        return kernel.PTXAssembly;
    }
}
