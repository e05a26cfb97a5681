namespace GpuExclusive.Cli.Stress;

/// <summary>One stress run as the user asked for it, already validated.</summary>
/// <param name="Seconds">Wall-clock bound.</param>
/// <param name="MaxOperations">Bound on CPU worker operations, or null for time only; whichever is reached first stops the run.</param>
/// <param name="Seed">Seeds every thread's operation schedule; the same seed gives each thread the same sequence.</param>
/// <param name="CounterPages">Pages of counters the workers and devices hammer.</param>
/// <param name="CpuThreads">Worker threads (the churn thread comes on top).</param>
/// <param name="JsonPath">Where to write the JSON report, or null.</param>
internal sealed record StressOptions(int Seconds, long? MaxOperations, int Seed, int CounterPages, int CpuThreads, string? JsonPath)
{
    /// <summary>Scratch pages for Discard and Unmap/Map churn; kept apart from the counters so totals stay exact.</summary>
    public const int ScratchPages = 8;

    /// <summary>Pages the pool-pressure thread of <c>--inject</c> grants, discards and refills.</summary>
    public const int PressurePages = 8;

    /// <summary>Most devices one run may open.</summary>
    public const int MaxDevices = 4;

    /// <summary>Devices opened, each with a mirror of the space and a thread running atomic batches and grants.</summary>
    public int Devices { get; init; }

    /// <summary>The accelerator the devices are opened on.</summary>
    public AcceleratorKind Accelerator { get; init; } = AcceleratorKind.Cpu;

    /// <summary>Fault injection: notifier delays, lingering page-lock holders, random revocations, pool pressure.</summary>
    public bool Inject { get; init; }

    /// <summary>A thread whose current operation has run this long is taken as stuck: the run dumps every thread and exits 3.</summary>
    public int WatchdogSeconds { get; init; } = 30;

    /// <summary>
    /// Frames the run may need at once: parent copies plus a forked child's and grandchild's shared originals of
    /// every counter, scratch and permutation page, the pressure pages, and slack for the engine's own use of the pool.
    /// </summary>
    public long RequiredPoolPages => (3L * (CounterPages + ScratchPages + 1)) + (Inject ? PressurePages : 0) + 64;

    /// <summary>
    /// Test hook, not reachable from the command line: worker 0 records one add more than it made on its first
    /// successful AtomicAdd, so that tests can prove the final check catches a lost update.
    /// </summary>
    public bool InjectPhantomAdd { get; init; }

    /// <summary>
    /// Test hook, not reachable from the command line: worker 0 stops in the middle of an operation after its 100th
    /// and waits until the run is torn down, as a deadlocked thread would, so that tests can see the watchdog fire.
    /// </summary>
    public bool FreezeWorker { get; init; }
}
