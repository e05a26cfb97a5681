using System.Text.RegularExpressions;

namespace GpuExclusive.Tests.Kernels;

/// <summary>
/// One PTX instruction as <see cref="PtxProgram"/> sees it: its guard, its opcode split into qualifiers
/// (<c>ld.acquire.sys.u32</c> is <c>ld</c>, <c>acquire</c>, <c>sys</c>, <c>u32</c>), its operands, and which registers
/// it defines and uses.
/// </summary>
/// <param name="Index">Position in the kernel body, the key of every per-instruction analysis result.</param>
/// <param name="Line">1-based line in the PTX text, for reports.</param>
/// <param name="Text">The instruction as written, whitespace collapsed.</param>
/// <param name="Guard">The predicate register of <c>@%p</c> or <c>@!%p</c>, if any.</param>
/// <param name="GuardNegated">True for <c>@!%p</c>.</param>
/// <param name="Opcode">The opcode with its qualifiers.</param>
/// <param name="Operands">Top-level operands (a vector <c>{%r1, %r2}</c> or an address <c>[%rd1+8]</c> is one).</param>
internal sealed partial record PtxInstruction(
    int Index,
    int Line,
    string Text,
    string? Guard,
    bool GuardNegated,
    string Opcode,
    IReadOnlyList<string> Operands)
{
    /// <summary>Instructions whose first operand is not a destination (stores and reductions name memory first).</summary>
    private static readonly HashSet<string> NoDestination =
        ["st", "red", "bra", "brx", "ret", "exit", "bar", "barrier", "fence", "membar", "trap", "prefetch", "prefetchu"];

    /// <summary>The opcode's parts: the operation, then its qualifiers.</summary>
    public IReadOnlyList<string> Qualifiers { get; } = Opcode.Split('.');

    /// <summary>The operation: <c>ld</c>, <c>st</c>, <c>atom</c>, <c>bra</c>, …</summary>
    public string Op => Qualifiers[0];

    /// <summary>Whether the opcode carries <paramref name="qualifier"/> (<c>sys</c>, <c>acquire</c>, <c>cas</c>, …).</summary>
    public bool Is(string qualifier) => Qualifiers.Skip(1).Contains(qualifier);

    /// <summary>A load, store, atomic or reduction, vector forms included.</summary>
    public bool IsMemoryAccess => Op is "ld" or "ldu" or "st" or "atom" or "red";

    /// <summary>
    /// A memory access the host could share: generic or <c>.global</c>. Kernel parameters, a thread's local memory and
    /// a group's shared memory are on the device only.
    /// </summary>
    public bool IsHostVisible =>
        IsMemoryAccess && !Qualifiers.Any(q => q is "param" or "local" or "const" || q.StartsWith("shared", StringComparison.Ordinal));

    /// <summary>Whether the access may change memory (an atomic writes even when its value is unchanged).</summary>
    public bool Writes => Op is "st" or "atom" or "red";

    /// <summary>Whether the access returns memory's value to the thread.</summary>
    public bool Reads => Op is "ld" or "ldu" or "atom";

    /// <summary>A conditional or unconditional jump, or a return: the last instruction of its block.</summary>
    public bool EndsBlock => Op is "bra" or "brx" or "ret" or "exit";

    /// <summary>The base of the address operand: a register, or a symbol such as a parameter's; null without one.</summary>
    public string? AddressBase => Operands.FirstOrDefault(o => o.StartsWith('['))?.Trim('[', ']').Split('+')[0].Trim();

    /// <summary>Registers this instruction writes.</summary>
    public IReadOnlyList<string> Defines => NoDestination.Contains(Op) || Operands.Count == 0 ? [] : Registers(Operands[0]);

    /// <summary>Registers this instruction reads, the guard excluded (it decides whether, not what).</summary>
    public IReadOnlyList<string> Uses => (NoDestination.Contains(Op) ? Operands : Operands.Skip(1)).SelectMany(Registers).ToList();

    /// <inheritdoc/>
    public override string ToString() => $"line {Line}: {Text}";

    /// <summary>Parses one statement (no label, no trailing semicolon); null when it is not an instruction.</summary>
    public static PtxInstruction? Parse(int index, int line, string statement)
    {
        var match = InstructionPattern().Match(statement);
        if (!match.Success)
        {
            return null;
        }

        var guard = match.Groups["guard"];
        return new PtxInstruction(
            index,
            line,
            WhitespacePattern().Replace(statement, " ") + ";",
            guard.Success ? guard.Value : null,
            match.Groups["not"].Success,
            match.Groups["opcode"].Value,
            SplitOperands(match.Groups["operands"].Value));
    }

    /// <summary>Every register named in <paramref name="operand"/> (special registers such as <c>%tid.x</c> are not).</summary>
    public static IReadOnlyList<string> Registers(string operand) =>
        RegisterPattern().Matches(operand).Select(m => m.Value).ToList();

    /// <summary>Splits at commas outside braces and brackets: <c>{%r1, %r2}, [%rd3]</c> is two operands.</summary>
    private static List<string> SplitOperands(string operands)
    {
        var result = new List<string>();
        var depth = 0;
        var start = 0;
        for (var i = 0; i < operands.Length; i++)
        {
            depth += operands[i] switch { '{' or '[' => 1, '}' or ']' => -1, _ => 0 };
            if (operands[i] == ',' && depth == 0)
            {
                result.Add(operands[start..i].Trim());
                start = i + 1;
            }
        }

        var last = operands[start..].Trim();
        if (last.Length > 0)
        {
            result.Add(last);
        }

        return result;
    }

    [GeneratedRegex(@"^(?:@(?<not>!)?(?<guard>%\w+)\s+)?(?<opcode>[a-z][\w.:]*)(?:\s+(?<operands>.*))?$")]
    private static partial Regex InstructionPattern();

    [GeneratedRegex(@"%[a-z]+\d+\b")]
    private static partial Regex RegisterPattern();

    [GeneratedRegex(@"\s+")]
    private static partial Regex WhitespacePattern();
}
