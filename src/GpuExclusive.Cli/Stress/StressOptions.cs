namespace GpuExclusive.Cli.Stress;

/// <summary>One stress run as the user asked for it, already validated.</summary>
/// <param name="Seconds">Wall-clock bound.</param>
/// <param name="MaxOperations">Bound on worker operations, or null for time only; whichever is reached first stops the run.</param>
/// <param name="Seed">Seeds every thread's operation schedule; the same seed gives each thread the same sequence.</param>
/// <param name="CounterPages">Pages of counters the workers hammer.</param>
/// <param name="CpuThreads">Worker threads (the churn thread comes on top).</param>
/// <param name="JsonPath">Where to write the JSON report, or null.</param>
internal sealed record StressOptions(int Seconds, long? MaxOperations, int Seed, int CounterPages, int CpuThreads, string? JsonPath)
{
    /// <summary>Scratch pages for Discard and Unmap/Map churn; kept apart from the counters so totals stay exact.</summary>
    public const int ScratchPages = 8;

    /// <summary>
    /// Frames the run may need at once: parent copies plus a forked child's and grandchild's shared originals of
    /// every counter and scratch page, and slack for the engine's own use of the pool.
    /// </summary>
    public long RequiredPoolPages => 3L * (CounterPages + ScratchPages) + 64;

    /// <summary>
    /// Test hook, not reachable from the command line: worker 0 records one add more than it made on its first
    /// successful AtomicAdd, so that tests can prove the final check catches a lost update.
    /// </summary>
    public bool InjectPhantomAdd { get; init; }
}
