using System.Diagnostics;
using GpuExclusive.Diagnostics;
using Microsoft.Extensions.Logging;

namespace GpuExclusive.Cli.Scenarios;

/// <summary>A scripted case's check failed; the message says what was expected and what happened.</summary>
internal sealed class ScenarioFailedException(string message) : Exception(message);

/// <summary>
/// What a scenario runs with: devices opened on demand (and shared by the scenarios of one invocation), a logger
/// factory, a bound on every wait, and the checks that turn a surprise into a <see cref="ScenarioFailedException"/>.
/// </summary>
internal sealed class ScenarioContext(AcceleratorKind accelerator, ILoggerFactory loggerFactory) : IDisposable
{
    /// <summary>The longest any scenario thread may take; longer is a failure (no progress), not a hang.</summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private readonly List<ExclusiveDevice> _devices = [];

    public ILoggerFactory LoggerFactory { get; } = loggerFactory;

    /// <summary>Lines a scenario adds to its result (figures worth seeing).</summary>
    public List<string> Notes { get; } = [];

    /// <summary>Device <paramref name="index"/>, opened on first use on the chosen accelerator.</summary>
    public ExclusiveDevice Device(int index = 0)
    {
        while (_devices.Count <= index)
            _devices.Add(Commands.StressCommand.OpenDevice(accelerator, LoggerFactory));
        return _devices[index];
    }

    public static void Check(bool condition, string failure)
    {
        if (!condition)
            throw new ScenarioFailedException(failure);
    }

    public static void Expect<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
            throw new ScenarioFailedException($"{what}: expected {expected}, got {actual}");
    }

    /// <summary>The engine's own invariant checker over the pool (meant for moments when no grant is in flight).</summary>
    public static void Invariants(PagePool pool, string when)
    {
        List<string> found = InvariantChecker.Collect(pool);
        Check(found.Count == 0, $"{when}: InvariantChecker: {string.Join("; ", found.Take(3))}{(found.Count > 3 ? $" (and {found.Count - 3} more)" : string.Empty)}");
    }

    /// <summary>After everything in the pool was disposed: every frame must be back (docs/architecture.md, invariant 5).</summary>
    public static void AllFramesBack(PagePool pool) =>
        Expect(pool.Capacity, pool.FreePages, "free frames after disposing every address space");

    /// <summary>Starts <paramref name="body"/> on a thread; <see cref="Join"/> fails the scenario if it throws or overruns.</summary>
    public static Task Start(Action body) => Task.Factory.StartNew(body, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>Fails the scenario if a background device thread has already ended (rethrowing what it threw).</summary>
    public static void ThrowIfEnded(Task device, string where)
    {
        if (device.IsCompleted)
        {
            Join(device, "the device thread");
            throw new ScenarioFailedException($"{where}: the device thread ended early");
        }
    }

    public static void Join(Task task, string what)
    {
        bool finished;
        try
        {
            finished = task.Wait(Bound);
        }
        catch (AggregateException e) when (e.InnerException is { } inner)
        {
            throw inner is ScenarioFailedException failed ? failed : new ScenarioFailedException($"{what} threw {inner.GetType().Name}: {inner.Message}");
        }

        Check(finished, $"{what} made no progress for {Bound.TotalSeconds:0} s (deadlock or livelock)");
    }

    public static double Median(List<double> values)
    {
        if (values.Count == 0)
            return 0;
        values.Sort();
        return values[values.Count / 2];
    }

    public static double Microseconds(long startTimestamp) => Stopwatch.GetElapsedTime(startTimestamp).TotalMicroseconds;

    public void Dispose()
    {
        foreach (ExclusiveDevice device in _devices)
            device.Dispose();
    }
}
