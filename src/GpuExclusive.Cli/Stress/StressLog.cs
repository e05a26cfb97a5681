using Microsoft.Extensions.Logging;

namespace GpuExclusive.Cli.Stress;

/// <summary>Source-generated log messages of the stress workload (no formatting unless the level is enabled).</summary>
internal static partial class StressLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Debug, Message = "Stress run started: seed {Seed}, {Workers} worker threads, {CounterPages} counter pages, pool of {PoolPages} frames")]
    public static partial void RunStarted(ILogger logger, int seed, int workers, int counterPages, long poolPages);

    [LoggerMessage(EventId = 101, Level = LogLevel.Debug, Message = "Stress run stopped after {Elapsed}: {WorkerOperations} worker operations, {ChurnOperations} churn operations")]
    public static partial void RunStopped(ILogger logger, TimeSpan elapsed, long workerOperations, long churnOperations);

    [LoggerMessage(EventId = 102, Level = LogLevel.Error, Message = "Invariant violated: {Violation}")]
    public static partial void Violation(ILogger logger, string violation);

    [LoggerMessage(EventId = 103, Level = LogLevel.Error, Message = "Unexpected exception on {Thread}")]
    public static partial void UnexpectedException(ILogger logger, string thread, Exception exception);
}
