namespace GpuExclusive.Cli.Stress;

/// <summary>
/// The <c>--ops</c> bound, shared by every CPU worker. Workers claim operations in batches, so they meet on one
/// interlocked counter once a batch rather than once an operation, and a worker that holds a batch finishes it: a run
/// bounded by <c>--ops</c> does exactly that many operations.
/// </summary>
internal sealed class OperationBudget(long? maxOperations)
{
    private const int Batch = 256;

    private long _claimed;

    /// <summary>
    /// Takes the next batch of the budget into <paramref name="allowance"/> (no bound without <c>--ops</c>); false once
    /// it is spent.
    /// </summary>
    public bool TryClaim(out long allowance)
    {
        if (maxOperations is not { } max)
        {
            allowance = long.MaxValue;
            return true;
        }

        // Only this worker stops here: one that still holds a batch finishes it.
        long start = Interlocked.Add(ref _claimed, Batch) - Batch;
        if (start >= max)
        {
            allowance = 0;
            return false;
        }

        allowance = Math.Min(Batch, max - start);
        return true;
    }
}
