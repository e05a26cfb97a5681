using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Jobs;

namespace GpuExclusive.Bench;

/// <summary>
/// Runs a benchmark class with tiered compilation off (<c>DOTNET_TieredCompilation=0</c>): every method is compiled
/// fully optimized on its first call.
/// </summary>
/// <remarks>
/// For classes whose iterations are a single invocation (an <c>[IterationSetup]</c> gives a fresh state per
/// invocation): the whole run is then a few thousand calls in well under the runtime's 100 ms tiering delay, so without
/// this the engine's code would be measured at tier 0 — unoptimized — for the entire run (the one-page ping-pong read
/// 27 µs that way against 8–10 µs in a warm loop). <c>gpux bench</c> compiles the same way. Both sides of each ratio
/// run under the same setting.
/// </remarks>
[AttributeUsage(AttributeTargets.Class)]
public sealed class FullyOptimizedAttribute : JobMutatorConfigBaseAttribute
{
    /// <summary>Adds the environment variable to every job the class runs under.</summary>
    public FullyOptimizedAttribute()
        : base(Job.Default.WithEnvironmentVariables(new EnvironmentVariable("DOTNET_TieredCompilation", "0")))
    {
    }
}
