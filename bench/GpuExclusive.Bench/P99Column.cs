using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Perfolizer.Horology;

namespace GpuExclusive.Bench;

/// <summary>
/// The 99th percentile of the measurements (BenchmarkDotNet's <see cref="StatisticColumn"/> stops at P95): for classes
/// whose invocations are single events, such as one revocation, where the tail is the figure a target bounds.
/// </summary>
internal sealed class P99Column : IColumn
{
    internal static readonly IColumn Instance = new P99Column();

    public string Id => nameof(P99Column);

    public string ColumnName => "P99";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Statistics;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Time;

    public string Legend => "Percentile 99: 99 % of the measurements are less than this value";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        if (summary[benchmarkCase]?.ResultStatistics is not { } statistics)
        {
            return "NA";
        }

        var nanoseconds = statistics.Percentiles.Percentile(99);
        var unit = style.TimeUnit ?? TimeUnit.GetBestTimeUnit(nanoseconds);
        var value = TimeUnit.Convert(nanoseconds, TimeUnit.Nanosecond, unit).ToString("N2", style.CultureInfo);
        return style.PrintUnitsInContent ? $"{value} {unit.Abbreviation}" : value;
    }

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public override string ToString() => ColumnName;
}
