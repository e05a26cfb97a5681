namespace GpuExclusive.Tests.Device;

/// <summary>Every <see cref="AtomicKind"/>, 32- and 64-bit, against a reference computed on the CPU.</summary>
public abstract partial class DeviceExclusiveContract
{
    private static readonly long[] Values32 = [0, 1, -1, 7, -3, int.MaxValue, int.MinValue, 0x5A5A5A5A, 0x0F0F00FF, 12345];

    private static readonly long[] Values64 =
        [0, 1, -1, 7, -3, long.MaxValue, long.MinValue, 0x1_0000_0000, -0x1_0000_0001, 0x5A5A5A5A_A5A5A5A5, 0x00FF_0000_0F0F_00FF, int.MaxValue, int.MinValue];

    [DeviceFact]
    public void Run_EveryAtomicKind32_GivesTheCpuReferenceOldAndFinalValues() => AssertEveryKindMatchesReference(is64Bit: false);

    [DeviceFact]
    public void Run_EveryAtomicKind64_GivesTheCpuReferenceOldAndFinalValues() => AssertEveryKindMatchesReference(is64Bit: true);

    /// <summary>
    /// One op per target, every (kind, initial, operand) combination, packed densely so that an op of the wrong width
    /// would corrupt its neighbour; CompareExchange both matching and missing.
    /// </summary>
    private void AssertEveryKindMatchesReference(bool is64Bit)
    {
        var values = is64Bit ? Values64 : Values32;
        var size = is64Bit ? 8UL : 4UL;
        var cases = new List<(AtomicKind Kind, long Initial, long Operand, long Comparand)>();
        foreach (var kind in Enum.GetValues<AtomicKind>())
        {
            foreach (var initial in values)
            {
                foreach (var operand in values)
                {
                    cases.Add((kind, initial, operand, kind == AtomicKind.CompareExchange ? operand : 0));
                    if (kind == AtomicKind.CompareExchange)
                    {
                        cases.Add((kind, initial, operand, initial)); // the comparand matches: the exchange happens
                    }
                }
            }
        }

        var pages = (int)(((ulong)cases.Count * size + Page - 1) / Page);
        var buffer = Space.Map((ulong)pages * Page, Protection.ReadWrite);
        var ops = new AtomicOp[cases.Count];
        for (var i = 0; i < cases.Count; i++)
        {
            var at = buffer + ((ulong)i * size);
            var (kind, initial, operand, comparand) = cases[i];
            WriteValue(Space, at, initial, is64Bit);
            ops[i] = new AtomicOp(at, kind, operand, comparand, is64Bit);
        }

        var oldValues = new long[ops.Length];
        var result = Mirror.Run(ops, oldValues);

        Assert.Equal(new BatchResult(ops.Length, 0, 0, result.DeviceFaults, result.Replays), result);
        for (var i = 0; i < cases.Count; i++)
        {
            var (kind, initial, operand, comparand) = cases[i];
            var (expectedOld, expectedNew) = is64Bit
                ? Reference64(kind, initial, operand, comparand)
                : Reference32(kind, (int)initial, (int)operand, (int)comparand);
            var actual = ReadValue(Space, buffer + ((ulong)i * size), is64Bit);
            Assert.True(expectedOld == oldValues[i], $"{kind} initial {initial} operand {operand} comparand {comparand}: old value {oldValues[i]}, expected {expectedOld}");
            Assert.True(expectedNew == actual, $"{kind} initial {initial} operand {operand} comparand {comparand}: final value {actual}, expected {expectedNew}");
        }

        AssertCleanTeardown();
    }

    private static (long Old, long New) Reference32(AtomicKind kind, int initial, int operand, int comparand) => (initial, kind switch
    {
        AtomicKind.Add => unchecked(initial + operand),
        AtomicKind.Exchange => operand,
        AtomicKind.CompareExchange => initial == comparand ? operand : initial,
        AtomicKind.Min => Math.Min(initial, operand),
        AtomicKind.Max => Math.Max(initial, operand),
        AtomicKind.And => initial & operand,
        AtomicKind.Or => initial | operand,
        AtomicKind.Xor => initial ^ operand,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    });

    private static (long Old, long New) Reference64(AtomicKind kind, long initial, long operand, long comparand) => (initial, kind switch
    {
        AtomicKind.Add => unchecked(initial + operand),
        AtomicKind.Exchange => operand,
        AtomicKind.CompareExchange => initial == comparand ? operand : initial,
        AtomicKind.Min => Math.Min(initial, operand),
        AtomicKind.Max => Math.Max(initial, operand),
        AtomicKind.And => initial & operand,
        AtomicKind.Or => initial | operand,
        AtomicKind.Xor => initial ^ operand,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    });

    private static void WriteValue(AddressSpace space, ulong address, long value, bool is64Bit)
    {
        if (is64Bit)
        {
            space.Write(address, value);
        }
        else
        {
            space.Write(address, (int)value);
        }
    }

    private static long ReadValue(AddressSpace space, ulong address, bool is64Bit) =>
        is64Bit ? space.Read<long>(address) : space.Read<int>(address);
}
