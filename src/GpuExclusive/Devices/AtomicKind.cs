namespace GpuExclusive;

/// <summary>The read-modify-write a device atomic performs.</summary>
public enum AtomicKind
{
    /// <summary>Add the operand.</summary>
    Add,
    /// <summary>Store the operand.</summary>
    Exchange,
    /// <summary>Store the operand if the value equals the comparand.</summary>
    CompareExchange,
    /// <summary>Store the minimum (signed).</summary>
    Min,
    /// <summary>Store the maximum (signed).</summary>
    Max,
    /// <summary>Bitwise and.</summary>
    And,
    /// <summary>Bitwise or.</summary>
    Or,
    /// <summary>Bitwise exclusive or.</summary>
    Xor,
}
