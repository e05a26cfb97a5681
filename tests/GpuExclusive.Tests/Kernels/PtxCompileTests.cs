using System.Reflection;
using GpuExclusive.Kernels;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime.Cuda;

namespace GpuExclusive.Tests.Kernels;

/// <summary>
/// The CUDA path without a GPU: the kernels must compile to PTX for SM 9.0 (the CPU accelerator runs kernels as plain
/// .NET code, so only this proves they are valid device code), and their PTX must keep the rules for memory shared
/// with the host (<see cref="HostSharedMemoryRules"/>, analysed by <see cref="PtxProgram"/>): a grep for an
/// instruction anywhere in the text passed the GPU-scope stop-flag poll that hung the H200.
/// </summary>
public sealed class PtxCompileTests
{
    private static readonly string[] Shared = ["states", "oldValues", "table", "control", "faults", "hazards", "progress"];
    private static readonly string[] DataPages = ["memory32", "memory64", "resident32", "resident64"];

    private static readonly Dictionary<string, Lazy<string>> BatchKernels = new[]
    {
        nameof(AtomicBatchKernel.Apply), nameof(AtomicBatchKernel.Serve), nameof(AtomicBatchKernel.ApplyWithoutHazards),
    }.ToDictionary(name => name, name => new Lazy<string>(() => Compile(typeof(AtomicBatchKernel).GetMethod(name)!)));

    [Theory]
    [InlineData(nameof(AtomicBatchKernel.Apply))]
    [InlineData(nameof(AtomicBatchKernel.Serve))]
    [InlineData(nameof(AtomicBatchKernel.ApplyWithoutHazards))]
    public void BatchKernel_CompilesToPtx_ForHopper(string kernel) =>
        Assert.Contains(".entry", BatchKernels[kernel].Value, StringComparison.Ordinal);

    [Theory]
    [InlineData("bar.sync")] // the first thread's doorbell decision reaches the group through a barrier
    [InlineData(".shared")]  // ... and shared memory
    public void ResidentKernel_CompilesToPtx_WithTheExpectedInstruction(string instruction) =>
        Assert.Contains(instruction, BatchKernels[nameof(AtomicBatchKernel.Serve)].Value, StringComparison.Ordinal);

    [Theory]
    [InlineData(nameof(AtomicBatchKernel.Apply), false)]
    [InlineData(nameof(AtomicBatchKernel.Serve), true)]
    [InlineData(nameof(AtomicBatchKernel.ApplyWithoutHazards), false)] // its hazard clears stay in the PTX (never taken)
    public void BatchKernel_KeepsTheHostSharedMemoryRules(string kernel, bool resident)
    {
        var violations = HostSharedMemoryRules.Check(PtxProgram.Parse(BatchKernels[kernel].Value), new(Shared, DataPages, resident));

        Assert.True(violations.Count == 0, $"{kernel}: {violations.Count} violation(s):\n{string.Join('\n', violations)}");
    }

    [Theory]
    [InlineData(nameof(AtomicBatchKernel.Apply), "memory32")]
    [InlineData(nameof(AtomicBatchKernel.Apply), "memory64")]
    [InlineData(nameof(AtomicBatchKernel.Serve), "memory32")]
    [InlineData(nameof(AtomicBatchKernel.Serve), "memory64")]
    [InlineData(nameof(AtomicBatchKernel.Apply), "resident32")] // device-resident pages, in the device's own memory
    [InlineData(nameof(AtomicBatchKernel.Apply), "resident64")]
    [InlineData(nameof(AtomicBatchKernel.Serve), "resident32")]
    [InlineData(nameof(AtomicBatchKernel.Serve), "resident64")]
    public void BatchKernel_AppliesEveryDataAtomic_ToThePages_AtGpuScope(string kernel, string page)
    {
        // GPU scope on the pages is the design (the hazard word's release publishes it); signed Min/Max must be .s.
        var bits = page.EndsWith("32", StringComparison.Ordinal) ? "32" : "64";
        string[] expected = [$"atom.add.u{bits}", $"atom.and.b{bits}", $"atom.cas.b{bits}", $"atom.exch.b{bits}", $"atom.max.s{bits}", $"atom.min.s{bits}", $"atom.or.b{bits}", $"atom.xor.b{bits}"];
        var program = PtxProgram.Parse(BatchKernels[kernel].Value);

        var atomics = program.Reachable.Where(i => i.Op is "atom" or "red" && program.AddressParameters(i).Contains(page)).Select(i => i.Opcode);

        Assert.Equal(expected, atomics.Distinct().Order(StringComparer.Ordinal));
    }

    [Fact]
    public void PlainAtomicsBaseline_CompilesToPtx_AsOneGlobalAddPerIndex()
    {
        var kernel = typeof(PlainAtomicsKernel).GetMethod(nameof(PlainAtomicsKernel.AddOne))!;
        var program = PtxProgram.Parse(Compile(kernel, implicitlyGrouped: true));

        var atomics = program.Reachable.Where(i => i.Op is "atom" or "red").ToList();

        // Only the atomic: one add on the target (a red when the old value is unused), no fence, no system-scope traffic.
        var add = Assert.Single(atomics);
        Assert.Contains("add", add.Opcode, StringComparison.Ordinal);
        Assert.Contains("target", program.AddressParameters(add));
        Assert.DoesNotContain(program.Reachable, i => i.Opcode.Contains(".sys", StringComparison.Ordinal) || i.Op is "membar" or "fence");
    }

    [Theory]
    [InlineData(nameof(ProbeKernels.PollsWithGpuScopeAtomic), nameof(PtxRule.NotStrongAtSystemScope), "atom.or.b32")]
    [InlineData(nameof(ProbeKernels.ReadsWithPlainLoad), nameof(PtxRule.NotStrongAtSystemScope), "ld.b32")]
    [InlineData(nameof(ProbeKernels.FencesAtDeviceLevel), nameof(PtxRule.FenceNotSystemWide), "membar.gl")]
    [InlineData(nameof(ProbeKernels.ReadsTableRightAfterHazard), nameof(PtxRule.HazardToTableUnfenced), "ld.acquire.sys.u64")]
    [InlineData(nameof(ProbeKernels.ChangesHazardRelaxed), nameof(PtxRule.HazardWriteNotRelease), "st.relaxed.sys.u32")]
    [InlineData(nameof(ProbeKernels.ReadsTableRelaxed), nameof(PtxRule.TableReadNotAcquire), "ld.relaxed.sys.u32")]
    [InlineData(nameof(ProbeKernels.RecordsFaultRelaxed), nameof(PtxRule.FaultRecordNotRelease), "st.relaxed.sys.u32")]
    [InlineData(nameof(ProbeKernels.ClosesDoorbellAtGpuScope), nameof(PtxRule.DoorbellNotAcqRel), "atom.cas.b32")]
    [InlineData(nameof(ProbeKernels.ReportsWithoutFence), nameof(PtxRule.ControlReleaseUnfenced), "st.release.sys.u32")]
    [InlineData(nameof(ProbeKernels.ReadsBatchRightAfterBarrier), nameof(PtxRule.BatchReadUnfenced), "ld.b32", true)]
    public void Probe_BreakingARule_IsReported(string probe, string rule, string opcode, bool resident = false)
    {
        var violations = CheckProbe(probe, resident);

        Assert.Contains(violations, v => v.Rule.ToString() == rule && v.Instruction.TrimEnd(';').Split(' ')[0] == opcode);
    }

    [Fact]
    public void Probe_KeepingTheRules_PassesThem() =>
        Assert.Empty(CheckProbe(nameof(ProbeKernels.KeepsTheRules)));

    [Fact]
    public void Probe_DeadArmBehindAConstantPredicate_IsNotChecked()
    {
        var program = PtxProgram.Parse(Compile(typeof(ProbeKernels).GetMethod(nameof(ProbeKernels.BranchesOnCudaAsmSupport))!));

        // The weak store is in the text — so the test is not vacuous — but unreachable.
        Assert.Contains(program.Instructions, i => i.Opcode == "st.b32");
        Assert.DoesNotContain(program.Reachable, i => i.Opcode == "st.b32");
        Assert.Empty(HostSharedMemoryRules.Check(program, new(["control"], [], Resident: false)));
    }

    /// <summary>The rules on a probe whose <see cref="SharedView{T}"/> parameters are the shared ones.</summary>
    private static IReadOnlyList<PtxViolation> CheckProbe(string name, bool resident = false)
    {
        var probe = typeof(ProbeKernels).GetMethod(name)!;
        var shared = probe.GetParameters()
            .Where(p => p.ParameterType.IsGenericType && p.ParameterType.GetGenericTypeDefinition() == typeof(SharedView<>))
            .Select(p => p.Name!)
            .ToList();
        return HostSharedMemoryRules.Check(PtxProgram.Parse(Compile(probe)), new(shared, [], resident));
    }

    /// <summary>PTX for SM 9.0 through ILGPU's backend alone: no device needed.</summary>
    private static string Compile(MethodInfo kernel, bool implicitlyGrouped = false)
    {
        using var context = Context.Create(builder => builder.Default());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null!);
        var entry = implicitlyGrouped ? EntryPointDescription.FromImplicitlyGroupedKernel(kernel) : EntryPointDescription.FromExplicitlyGroupedKernel(kernel);
        return ((PTXCompiledKernel)backend.Compile(entry, default)).PTXAssembly;
    }
}
