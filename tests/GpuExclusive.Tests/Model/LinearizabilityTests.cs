using CsCheck;
using GpuExclusive.Diagnostics;
using GpuExclusive.Tests.Device;

namespace GpuExclusive.Tests.Model;

/// <summary>
/// Linearizability (issue 6, item 2): CPU atomics, device batches and grants on two shared counters, run in parallel by
/// CsCheck's <c>SampleParallel</c>; the final counters must equal those of <i>some</i> sequential order of the same
/// operations. Exchange and compare-exchange make the order observable, so a torn or lost update shows.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class LinearizabilityTests(CpuAcceleratorFixture fixture) : IClassFixture<CpuAcceleratorFixture>
{
    private const ulong Page = PagePool.PageSize;

    [Fact]
    public void CpuAtomics_DeviceBatches_AndGrants_OnSharedCounters_AreLinearizable()
    {
        var device = fixture.Device;
        var counter = Gen.Int[0, 1];
        var operand = Gen.Int[1, 9];
        Check.SampleParallel(
            Gen.Const(() => new Counters(device)),
            [
                Gen.Select(counter, operand).Operation<Counters>(t => $"cpu add c{t.Item1} {t.Item2}", (s, t) => s.Space.AtomicAdd(s.Address(t.Item1), t.Item2)),
                Gen.Select(counter, operand).Operation<Counters>(t => $"cpu write c{t.Item1} {t.Item2}", (s, t) => s.Space.Write(s.Address(t.Item1), t.Item2)),
                Gen.Select(counter, operand).Operation<Counters>(t => $"device add c{t.Item1} {t.Item2}", (s, t) => s.Device(new AtomicOp(s.Address(t.Item1), AtomicKind.Add, t.Item2))),
                Gen.Select(counter, operand).Operation<Counters>(t => $"device xchg c{t.Item1} {t.Item2}", (s, t) => s.Device(new AtomicOp(s.Address(t.Item1), AtomicKind.Exchange, t.Item2))),
                Gen.Select(counter, operand).Operation<Counters>(t => $"device cas c{t.Item1} 0->{t.Item2}", (s, t) => s.Device(new AtomicOp(s.Address(t.Item1), AtomicKind.CompareExchange, t.Item2, Comparand: 0))),
                counter.Operation<Counters>(c => $"grant c{c}", (s, c) => s.Mirror.MakeExclusive(s.Address(c), Page)),
            ],
            equal: static (a, b) => a.Snapshot() == b.Snapshot(),
            print: static s => s.Snapshot().ToString(),
            iter: 25,
            threads: 2);

        // The sample really ran operations in parallel and in sequence (not a vacuous pass).
        Assert.True(Volatile.Read(ref Counters.DeviceOps) > 25, $"only {Counters.DeviceOps} device ops ran");
    }

    /// <summary>Two counters on two pages of a fresh space, mirrored by the shared device.</summary>
    private sealed class Counters
    {
        private readonly ulong _base;

        public Counters(ExclusiveDevice device)
        {
            Pool = new PagePool(8, lockMemory: false);
            Space = new AddressSpace(Pool);
            _base = Space.Map(2 * Page, Protection.ReadWrite);
            Mirror = device.Mirror(Space);
        }

        public PagePool Pool { get; }

        public AddressSpace Space { get; }

        public DeviceMirror Mirror { get; }

        public ulong Address(int counter) => _base + ((ulong)counter * Page);

        public static int DeviceOps;

        public void Device(AtomicOp op)
        {
            Interlocked.Increment(ref DeviceOps);
            var result = Mirror.Run([op]);
            if (result.Completed != 1)
            {
                throw new InvalidOperationException($"device op not applied: {result}");
            }
        }

        /// <summary>
        /// The observable state, after checking the invariants. States are not disposed: CsCheck may run operations on
        /// a state again when it replays a seed. The fixture's device disposes their mirrors at the end of the class;
        /// each state's pool is 8 pages.
        /// </summary>
        public (int First, int Second) Snapshot()
        {
            InvariantChecker.Check(Pool);
            return (Space.Read<int>(Address(0)), Space.Read<int>(Address(1)));
        }
    }
}
