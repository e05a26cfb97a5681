namespace GpuExclusive.Tests.Cli;

/// <summary>
/// The embedding example of README.md, which quotes the lines between the markers verbatim (a test checks it does);
/// <see cref="ReadmeTests"/> runs it.
/// </summary>
internal static class ReadmeEmbeddingExample
{
    public static (int Granted, BatchResult Result, int Total, int HeldAfter) Run()
    {
        // README:BEGIN
        using var pool = new PagePool(capacityPages: 1024);           // 4 MiB of pinned frames
        using var space = new AddressSpace(pool);
        using var device = ExclusiveDevice.Open(AcceleratorKind.Cpu); // Auto picks a CUDA GPU when there is one
        using var mirror = device.Mirror(space);                      // the device's page table for this space

        ulong counters = space.Map(4 * PagePool.PageSize, Protection.ReadWrite);
        int granted = mirror.MakeExclusive(counters, PagePool.PageSize); // page 0 now belongs to the device

        AtomicOp[] ops = [new(counters, AtomicKind.Add, 5), new(counters + 4, AtomicKind.Add, 7)];
        var old = new long[ops.Length];
        BatchResult result = mirror.Run(ops, old);                    // device atomics on pinned host memory

        int total = space.AtomicAdd(counters, 1);                     // CPU touch: revokes the page, then adds: 6
        int held = mirror.CountExclusive(counters, PagePool.PageSize); // 0: the CPU took the page back
        Console.WriteLine($"granted {granted}, completed {result.Completed}, counter {total}, device holds {held}");
        // README:END
        return (granted, result, total, held);
    }
}
