using System.Text;
using CsCheck;
using GpuExclusive.Diagnostics;
using GpuExclusive.Tests.Device;
using Xunit.Abstractions;

namespace GpuExclusive.Tests.Model;

/// <summary>
/// Issue 6, item 1: random operation sequences over a root space and its forks, run against the engine (through one
/// CPU-accelerator device) and against <see cref="ModelSpace"/>; every observable is compared after every step and the
/// invariants (docs/architecture.md) are checked. A failure prints CsCheck's seed and the shrunk sequence.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed partial class ModelBasedTests(CpuAcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<CpuAcceleratorFixture>
{
    private const ulong Page = PagePool.PageSize;
    private const int MaxSpaces = 4;
    private static readonly int[] Slots = [0, 1, 1023];
    private static readonly Protection[] Protections = [Protection.Read, Protection.ReadWrite, Protection.None];

    private static readonly Gen<ModelOp> OpGen =
        Gen.Select(
            Gen.Frequency(
                (4, Gen.Const(ModelOpKind.Map)), (2, Gen.Const(ModelOpKind.Unmap)), (2, Gen.Const(ModelOpKind.Protect)),
                (2, Gen.Const(ModelOpKind.Discard)), (2, Gen.Const(ModelOpKind.Fork)), (1, Gen.Const(ModelOpKind.Lock)),
                (1, Gen.Const(ModelOpKind.Unlock)), (1, Gen.Const(ModelOpKind.ClearSoftDirty)), (3, Gen.Const(ModelOpKind.Read)),
                (3, Gen.Const(ModelOpKind.Write)), (2, Gen.Const(ModelOpKind.AtomicAdd)), (3, Gen.Const(ModelOpKind.MakeExclusive)),
                (3, Gen.Const(ModelOpKind.Run)), (2, Gen.Const(ModelOpKind.DeviceRead)), (2, Gen.Const(ModelOpKind.DeviceWrite)),
                (1, Gen.Const(ModelOpKind.DisposeSpace))),
            Gen.Int[0, 7], Gen.Int[0, 7], Gen.Int[0, 4], Gen.Int[1, 4], Gen.Int[-3, 100])
        .Select(t => new ModelOp(t.Item1, t.Item2, t.Item3, t.Item4, t.Item5, t.Item6));

    private static readonly Gen<ModelOp[]> SequenceGen = OpGen.Array[1, 30];

    [Theory]
    [InlineData(PagePlacement.InPlace)]
    [InlineData(PagePlacement.DeviceResident)] // the same observables when the device keeps its pages in its own memory
    public void RandomSequences_MatchTheReferenceModel(PagePlacement placement)
    {
        var device = fixture.Device;
        SequenceGen.Sample(
            ops => new Runner(device, placement).Execute(ops),
            iter: 300,
            threads: 1,
            print: Print,
            writeLine: output.WriteLine);
    }

    private static string Print(ModelOp[] ops)
    {
        var text = new StringBuilder();
        for (var i = 0; i < ops.Length; i++)
        {
            text.Append('\n').Append(i).Append(": ").Append(ops[i]);
        }

        return text.ToString();
    }
}
