using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Jobs;

namespace GpuExclusive.Bench;

/// <summary>
/// Runs a benchmark class without BenchmarkDotNet's full garbage collection before each iteration.
/// </summary>
/// <remarks>
/// For classes that measure something happening beside the benchmark thread (a batch running on a thread of its own):
/// a forced collection suspends every managed thread — the CPU accelerator's kernel threads among them — right before
/// the timed call, so each sample would be taken just as the kernel resumes, which is not the state being measured.
/// The workloads allocate next to nothing while they are timed, so no collection lands in the samples either way.
/// </remarks>
[AttributeUsage(AttributeTargets.Class)]
public sealed class NoForcedGcAttribute : JobMutatorConfigBaseAttribute
{
    public NoForcedGcAttribute()
        : base(Job.Default.WithGcForce(false))
    {
    }
}
