namespace GpuExclusive.Workloads;

/// <summary>Checks of a batch's outcome: a benchmark whose batch left ops undone measured something else.</summary>
internal static class Batches
{
    /// <summary>Returns <paramref name="result"/> if every one of <paramref name="ops"/> ops completed; throws otherwise.</summary>
    /// <exception cref="InvalidOperationException">Some op was not applied.</exception>
    internal static BatchResult RequireCompleted(BatchResult result, long ops, string what) =>
        result.Completed == ops ? result : throw new InvalidOperationException($"{what} completed {result.Completed} of {ops} ops ({result})");

    /// <summary><paramref name="ops"/> adds of 1, spread round-robin over <paramref name="pages"/> pages from <paramref name="address"/> (one counter a page).</summary>
    internal static AtomicOp[] AddsOverPages(ulong address, int pages, int ops)
    {
        var batch = new AtomicOp[ops];
        for (var i = 0; i < ops; i++)
        {
            batch[i] = new AtomicOp(address + ((ulong)(i % pages) * PagePool.PageSize), AtomicKind.Add, 1);
        }

        return batch;
    }
}
