using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;

namespace GpuExclusive.Bench;

/// <summary>
/// Adds P95 and P99 columns to a class whose invocations are single events: there a percentile describes single events
/// (in the other classes an iteration averages many operations, and over 7 iterations a P99 would say nothing).
/// </summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class TailColumnsAttribute : ColumnConfigBaseAttribute
{
    public TailColumnsAttribute()
        : base(StatisticColumn.P95, P99Column.Instance)
    {
    }
}
