namespace GpuExclusive.Diagnostics;

/// <summary>One or more engine invariants (docs/architecture.md, "invariants") do not hold; <see cref="Violations"/> lists them.</summary>
public sealed class InvariantViolationException(IReadOnlyList<string> violations)
    : Exception($"{violations.Count} invariant violation(s): {string.Join("; ", violations.Take(10))}")
{
    /// <summary>Every violation found, one line each.</summary>
    public IReadOnlyList<string> Violations { get; } = violations;
}
