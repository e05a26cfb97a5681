using System.Globalization;

namespace GpuExclusive.Cli.Bench;

/// <summary>How a row's ratio reads: engine time ÷ baseline time, or engine speed ÷ baseline speed.</summary>
internal enum RatioKind
{
    /// <summary>Engine time ÷ baseline time (lower is better).</summary>
    Time,

    /// <summary>Engine speed ÷ baseline speed = baseline time ÷ engine time (higher is better).</summary>
    Speed,
}

/// <summary>What a DESIGN §7 target bounds: the ratio, or the engine's median itself (and its p99).</summary>
internal enum TargetKind
{
    RatioAtMost,
    RatioAtLeast,
    EngineMedianAtMost,
    EngineMedianAndP99AtMost,
}

/// <param name="P99Value">With <see cref="TargetKind.EngineMedianAndP99AtMost"/>: the bound on the engine's p99.</param>
internal sealed record Target(TargetKind Kind, double Value, string Text, double P99Value = 0)
{
    public bool Met(BenchRow row) => Kind switch
    {
        TargetKind.RatioAtMost => row.Ratio is { } r && r <= Value,
        TargetKind.RatioAtLeast => row.Ratio is { } r && r >= Value,
        TargetKind.EngineMedianAndP99AtMost => row.Engine.Median <= Value && row.Engine.P99 <= P99Value,
        _ => row.Engine.Median <= Value,
    };
}

/// <summary>A further figure of a row (how many touches found a page held, a reader's reads): a count, or a time in ns.</summary>
internal sealed record RowFigure(string Name, double Value, bool IsNanoseconds = false)
{
    public string Format() => IsNanoseconds ? BenchRow.FormatNs(Value) : Value.ToString(Value == Math.Floor(Value) ? "N0" : "N1", CultureInfo.InvariantCulture);
}

/// <summary>One line of the report: the engine's figure, the baseline measured in the same run, and their ratio.</summary>
internal sealed record BenchRow(
    string Group,
    string Name,
    string Unit,
    string EngineLabel,
    Stats Engine,
    string BaselineLabel,
    Stats? Baseline,
    RatioKind RatioKind,
    Target? Target,
    string? Note = null)
{
    /// <summary>Further figures, written to the JSON report under <c>figures</c> and printed below the table.</summary>
    public IReadOnlyList<RowFigure> Figures { get; init; } = [];

    public double? Ratio => Baseline is null || Baseline.Median <= 0 || Engine.Median <= 0
        ? null
        : RatioKind == RatioKind.Time ? Engine.Median / Baseline.Median : Baseline.Median / Engine.Median;

    /// <summary>pass, miss, or info (no DESIGN §7 target on this row).</summary>
    public string Verdict => Target is null ? "info" : Target.Met(this) ? "pass" : "miss";

    public bool IsBytes => Unit.StartsWith('B');

    public string Format(double value) => IsBytes ? $"{value.ToString("0.#", CultureInfo.InvariantCulture)} B" : FormatNs(value);

    public static string FormatNs(double ns) => ns switch
    {
        < 10 => $"{ns.ToString("0.00", CultureInfo.InvariantCulture)} ns",
        < 1_000 => $"{ns.ToString("0.0", CultureInfo.InvariantCulture)} ns",
        < 1_000_000 => $"{(ns / 1e3).ToString("0.00", CultureInfo.InvariantCulture)} µs",
        < 1_000_000_000 => $"{(ns / 1e6).ToString("0.00", CultureInfo.InvariantCulture)} ms",
        _ => $"{(ns / 1e9).ToString("0.00", CultureInfo.InvariantCulture)} s",
    };
}
