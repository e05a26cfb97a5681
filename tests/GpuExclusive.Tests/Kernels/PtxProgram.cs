using System.Globalization;
using System.Text.RegularExpressions;

namespace GpuExclusive.Tests.Kernels;

/// <summary>
/// One PTX kernel, analysed far enough to say which kernel parameters each memory access may point into, and what
/// happened on the paths leading to it: basic blocks, the blocks reachable once constant branches are folded, reaching
/// definitions, and a parameter taint per definition.
/// </summary>
/// <remarks>
/// <para>
/// Why flow-sensitive: ILGPU reuses registers for unrelated values, so "may <c>%rd24</c> hold a <c>states</c> address"
/// has an answer per program point only. Why fold constant branches: ILGPU leaves dead arms behind constant predicates
/// (<c>setp.ne.s32 %p1, 1, 1; @%p1 bra …</c>, e.g. from <c>if (CudaAsm.IsSupported)</c>), and a weak access there never
/// runs. Folding is part of the reaching-definitions fixpoint: a block is reached only along edges its branch can take
/// given the predicate definitions reaching it (unknown predicates take both).
/// </para>
/// <para>
/// Taint: <c>ld.param</c> of a parameter is a root (any field: a view's pointer, length or device address — erring
/// towards calling an access shared), and a definition's taint is the union of the taints of the definitions reaching
/// its source registers. A value loaded from memory (or returned by an atomic) carries none: a host-shared word holds
/// data, not pointers, and ILGPU's spills of a pointer to <c>.local</c> would lose the taint. That loss is not silent:
/// an access whose address derives from no parameter is reported as unclassified by the rules. Predicates carry none
/// either: choosing between addresses is not deriving one.
/// </para>
/// <para>
/// Scope of the parser: the PTX ILGPU 1.5.3 emits for one kernel — one <c>.entry</c>, no <c>.func</c> or <c>call</c>,
/// no nested <c>{ }</c> scopes, jump tables as <c>.branchtargets</c> with <c>brx.idx</c>. Anything else throws rather
/// than being analysed wrongly.
/// </para>
/// </remarks>
internal sealed partial class PtxProgram
{
    private readonly List<PtxInstruction> _instructions = [];
    private readonly List<Block> _blocks = [];
    private readonly Dictionary<string, int> _labels = [];
    private readonly Dictionary<string, string[]> _jumpTables = [];

    // Definitions are (instruction, register) pairs: a vector load defines several registers, and a later write to one
    // of them must not kill the others.
    private readonly List<(int Instruction, string Register)> _definitions = [];
    private readonly Dictionary<string, List<int>> _definitionsOf = [];
    private readonly Dictionary<int, List<int>> _definitionsAt = [];

    private HashSet<int>?[] _reachingIn = [];
    private HashSet<string>[] _taint = [];

    private PtxProgram()
    {
    }

    /// <summary>Every instruction of the kernel body, in text order.</summary>
    public IReadOnlyList<PtxInstruction> Instructions => _instructions;

    /// <summary>The instructions of blocks reachable from the entry, in text order.</summary>
    public IEnumerable<PtxInstruction> Reachable =>
        _blocks.Where(b => b.Reached).SelectMany(b => _instructions.Skip(b.Start).Take(b.End - b.Start));

    /// <summary>Parses and analyses the single kernel in <paramref name="ptx"/>.</summary>
    public static PtxProgram Parse(string ptx)
    {
        if (EntryPattern().Count(ptx) != 1 || ptx.Contains(".func", StringComparison.Ordinal))
        {
            throw new NotSupportedException("expected exactly one .entry and no .func");
        }

        var program = new PtxProgram();
        program.ReadBody(ptx.Split('\n'));
        program.BuildBlocks();
        program.SolveReachingDefinitions();
        program.SolveTaint();
        return program;
    }

    /// <summary>
    /// The kernel parameters (by their C# names) that the address of <paramref name="access"/> may derive from; empty
    /// for an unreachable instruction or an address built from no parameter.
    /// </summary>
    public IReadOnlySet<string> AddressParameters(PtxInstruction access)
    {
        var result = new HashSet<string>(StringComparer.Ordinal);
        if (access.AddressBase is { } address && _reachingIn[access.Index] is { } reaching)
        {
            foreach (var definition in ReachingDefinitions(reaching, address))
            {
                result.UnionWith(_taint[definition]);
            }
        }

        return result;
    }

    /// <summary>
    /// For each instruction (by index): the instructions <paramref name="opens"/> holds for that some path from the entry
    /// passes before reaching it with no instruction <paramref name="closes"/> holds for after them. A forward
    /// may-analysis over the folded control-flow graph ("the hazard writes since the last fence"); empty where nothing
    /// is open or the instruction is unreachable.
    /// </summary>
    public IReadOnlySet<int>[] OpenBefore(Func<PtxInstruction, bool> opens, Func<PtxInstruction, bool> closes)
    {
        var before = new IReadOnlySet<int>[_instructions.Count];
        Array.Fill(before, new HashSet<int>());
        var openIn = new HashSet<int>?[_blocks.Count];
        openIn[0] = [];
        var work = new Queue<int>([0]);
        while (work.TryDequeue(out var b))
        {
            var open = new HashSet<int>(openIn[b]!);
            for (var i = _blocks[b].Start; i < _blocks[b].End; i++)
            {
                before[i] = new HashSet<int>(open);
                if (closes(_instructions[i]))
                {
                    open.Clear();
                }
                else if (opens(_instructions[i]))
                {
                    open.Add(i);
                }
            }

            foreach (var next in _blocks[b].Live)
            {
                if (openIn[next] is null || !openIn[next]!.IsSupersetOf(open))
                {
                    (openIn[next] ??= []).UnionWith(open);
                    work.Enqueue(next);
                }
            }
        }

        return before;
    }

    private void ReadBody(string[] lines)
    {
        var entry = Array.FindIndex(lines, l => EntryPattern().IsMatch(l));
        var open = Array.FindIndex(lines, entry, l => l.Trim() == "{");
        var pendingLabels = new List<string>();
        for (var n = open + 1; n < lines.Length; n++)
        {
            var text = lines[n].Split("//")[0].Trim();
            if (text == "}")
            {
                return;
            }

            if (text == "{")
            {
                throw new NotSupportedException($"line {n + 1}: nested scope");
            }

            if (LabelPattern().Match(text) is { Success: true } label)
            {
                pendingLabels.Add(label.Groups["label"].Value);
                text = label.Groups["rest"].Value.Trim();
            }

            if (text.StartsWith(".branchtargets", StringComparison.Ordinal))
            {
                // "L: .branchtargets A, B; brx.idx %r, L;": the table is named by the label before it.
                var targets = text[".branchtargets".Length..].TrimEnd(';').Split(',', StringSplitOptions.TrimEntries);
                pendingLabels.ForEach(l => _jumpTables[l] = targets);
                continue;
            }

            if (text.Length == 0 || text.StartsWith('.'))
            {
                continue; // declarations: .reg, .local, .shared
            }

            foreach (var statement in text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var instruction = PtxInstruction.Parse(_instructions.Count, n + 1, statement)
                    ?? throw new NotSupportedException($"line {n + 1}: cannot parse '{statement}'");
                if (instruction.Op == "call")
                {
                    throw new NotSupportedException($"line {n + 1}: calls are not followed");
                }

                pendingLabels.ForEach(l => _labels[l] = instruction.Index);
                pendingLabels.Clear();
                _instructions.Add(instruction);
            }
        }

        throw new NotSupportedException("the kernel body does not end");
    }

    private void BuildBlocks()
    {
        var leaders = new SortedSet<int>(_labels.Values) { 0 };
        leaders.UnionWith(_instructions.Where(i => i.EndsBlock).Select(i => i.Index + 1));
        leaders.RemoveWhere(l => l >= _instructions.Count);
        var starts = leaders.ToList();
        var blockAt = starts.Select((start, b) => (start, b)).ToDictionary(p => p.start, p => p.b);
        int Target(string label) => blockAt[_labels[label]];

        for (var b = 0; b < starts.Count; b++)
        {
            var end = b + 1 < starts.Count ? starts[b + 1] : _instructions.Count;
            var last = _instructions[end - 1];
            int[] taken = last.Op switch
            {
                "bra" => [Target(last.Operands[0])],
                "brx" => _jumpTables[last.Operands[1]].Select(Target).ToArray(),
                _ => [],
            };

            // Only a block ending in an unconditional jump or return cannot fall through.
            var fallsThrough = (!last.EndsBlock || last.Guard is not null) && end < _instructions.Count;
            _blocks.Add(new Block(starts[b], end, taken, fallsThrough ? b + 1 : null));
        }
    }

    /// <summary>
    /// Reaching definitions, iterated to a fixpoint together with reachability: a block's successors are those its
    /// branch may take given the definitions of its predicate that reach it (<see cref="GuardValue"/>).
    /// </summary>
    private void SolveReachingDefinitions()
    {
        foreach (var instruction in _instructions)
        {
            foreach (var register in instruction.Defines)
            {
                var id = _definitions.Count;
                _definitions.Add((instruction.Index, register));
                AddTo(_definitionsOf, register, id);
                AddTo(_definitionsAt, instruction.Index, id);
            }
        }

        var blockIn = new HashSet<int>?[_blocks.Count];
        blockIn[0] = [];
        var work = new Queue<int>([0]);
        while (work.TryDequeue(out var b))
        {
            var state = new HashSet<int>(blockIn[b]!);
            for (var i = _blocks[b].Start; i < _blocks[b].End; i++)
            {
                Transfer(state, _instructions[i]);
            }

            foreach (var next in LiveSuccessors(_blocks[b], state))
            {
                if (blockIn[next] is null || !blockIn[next]!.IsSupersetOf(state))
                {
                    (blockIn[next] ??= []).UnionWith(state);
                    work.Enqueue(next);
                }
            }
        }

        // Replay each reached block once more to keep the state before every instruction, and its final edges.
        _reachingIn = new HashSet<int>?[_instructions.Count];
        for (var b = 0; b < _blocks.Count; b++)
        {
            if (blockIn[b] is not { } reached)
            {
                continue;
            }

            var state = new HashSet<int>(reached);
            for (var i = _blocks[b].Start; i < _blocks[b].End; i++)
            {
                _reachingIn[i] = new HashSet<int>(state);
                Transfer(state, _instructions[i]);
            }

            _blocks[b] = _blocks[b] with { Reached = true, Live = LiveSuccessors(_blocks[b], state) };
        }
    }

    /// <summary>An unguarded definition kills the register's other definitions; a guarded one may not happen, so it kills none.</summary>
    private void Transfer(HashSet<int> state, PtxInstruction instruction)
    {
        foreach (var id in _definitionsAt.GetValueOrDefault(instruction.Index, []))
        {
            if (instruction.Guard is null)
            {
                state.ExceptWith(_definitionsOf[_definitions[id].Register]);
            }

            state.Add(id);
        }
    }

    private int[] LiveSuccessors(Block block, HashSet<int> stateAtEnd)
    {
        var last = _instructions[block.End - 1];
        var guard = last.Guard is not null && last.EndsBlock ? GuardValue(last, stateAtEnd) : null;
        var fallThrough = block.FallThrough is { } next && guard != true ? new[] { next } : [];
        return guard == false ? fallThrough : [.. block.Taken, .. fallThrough];
    }

    /// <summary>The value of a branch's guard if every definition of it that reaches the branch is the same constant.</summary>
    private bool? GuardValue(PtxInstruction branch, HashSet<int> state)
    {
        bool? value = null;
        foreach (var id in ReachingDefinitions(state, branch.Guard!))
        {
            var constant = ConstantPredicate(_instructions[_definitions[id].Instruction]);
            if (constant is null || (value is { } seen && seen != constant))
            {
                return null;
            }

            value = constant;
        }

        return value is { } known ? known != branch.GuardNegated : null;
    }

    /// <summary><c>mov.pred %p, 0|1</c> or <c>setp.cmp.type %p, imm, imm</c>, unguarded: the value it sets; else null.</summary>
    private static bool? ConstantPredicate(PtxInstruction definition)
    {
        var operands = definition.Operands;
        if (definition.Guard is not null || operands.Count != (definition.Op == "setp" ? 3 : 2) || operands[0].Contains('|'))
        {
            return null;
        }

        if (definition.Opcode == "mov.pred")
        {
            return operands[1] switch { "0" => false, "1" => true, _ => null };
        }

        if (definition.Op != "setp" || definition.Qualifiers.Count != 3 || !TryInteger(operands[1], out var a) || !TryInteger(operands[2], out var b))
        {
            return null;
        }

        var type = definition.Qualifiers[2];
        if (type[0] is not ('s' or 'u' or 'b') || !int.TryParse(type[1..], CultureInfo.InvariantCulture, out var bits))
        {
            return null;
        }

        var mask = bits >= 64 ? ulong.MaxValue : (1UL << bits) - 1;
        ulong ua = (ulong)a & mask, ub = (ulong)b & mask;
        long sa = (long)(ua << (64 - bits)) >> (64 - bits), sb = (long)(ub << (64 - bits)) >> (64 - bits);
        var signed = type[0] == 's';
        return definition.Qualifiers[1] switch
        {
            "eq" => ua == ub,
            "ne" => ua != ub,
            "lt" => signed ? sa < sb : ua < ub,
            "le" => signed ? sa <= sb : ua <= ub,
            "gt" => signed ? sa > sb : ua > ub,
            "ge" => signed ? sa >= sb : ua >= ub,
            "lo" => ua < ub,
            "ls" => ua <= ub,
            "hi" => ua > ub,
            "hs" => ua >= ub,
            _ => null,
        };
    }

    // ILGPU writes immediates in decimal; anything else is not folded (both arms stay reachable: the safe side).
    private static bool TryInteger(string literal, out long value) =>
        long.TryParse(literal, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value);

    /// <summary>Taint per definition, grown to a fixpoint (loops feed definitions back into themselves).</summary>
    private void SolveTaint()
    {
        _taint = _definitions.Select(_ => new HashSet<string>(StringComparer.Ordinal)).ToArray();
        for (var id = 0; id < _definitions.Count; id++)
        {
            var instruction = _instructions[_definitions[id].Instruction];
            if (instruction.Op == "ld" && instruction.Is("param"))
            {
                _taint[id].Add(ParameterName(instruction.AddressBase!));
            }
        }

        for (var changed = true; changed;)
        {
            changed = false;
            for (var id = 0; id < _definitions.Count; id++)
            {
                var instruction = _instructions[_definitions[id].Instruction];
                if (instruction.Reads || _reachingIn[instruction.Index] is not { } reaching)
                {
                    continue; // a loaded value carries no taint (see the remarks); unreachable code none either
                }

                foreach (var source in instruction.Uses.Where(r => !r.StartsWith("%p", StringComparison.Ordinal)))
                {
                    foreach (var definition in ReachingDefinitions(reaching, source))
                    {
                        var before = _taint[id].Count;
                        _taint[id].UnionWith(_taint[definition]);
                        changed |= _taint[id].Count != before;
                    }
                }
            }
        }
    }

    private IEnumerable<int> ReachingDefinitions(HashSet<int> state, string register) =>
        _definitionsOf.GetValueOrDefault(register, []).Where(state.Contains);

    /// <summary>ILGPU names a parameter's symbol <c>_name_1234</c>; the C# name is the middle.</summary>
    private static string ParameterName(string symbol) =>
        ParameterPattern().Match(symbol) is { Success: true } match
            ? match.Groups["name"].Value
            : throw new NotSupportedException($"unexpected parameter symbol '{symbol}'");

    private static void AddTo<TKey>(Dictionary<TKey, List<int>> map, TKey key, int value)
        where TKey : notnull
    {
        if (!map.TryGetValue(key, out var list))
        {
            map[key] = list = [];
        }

        list.Add(value);
    }

    [GeneratedRegex(@"\.entry\b")]
    private static partial Regex EntryPattern();

    [GeneratedRegex(@"^(?<label>[A-Za-z_$][\w$]*):(?<rest>.*)$")]
    private static partial Regex LabelPattern();

    [GeneratedRegex(@"^_(?<name>.+)_\d+$")]
    private static partial Regex ParameterPattern();

    /// <summary>
    /// Instructions [<paramref name="Start"/>, <paramref name="End"/>): <paramref name="Taken"/> are its jump targets,
    /// <paramref name="FallThrough"/> the next block if it can fall through; after the analysis, whether it is reached
    /// and its successors once constant branches are folded.
    /// </summary>
    private sealed record Block(int Start, int End, int[] Taken, int? FallThrough)
    {
        public bool Reached { get; init; }

        public int[] Live { get; init; } = [];
    }
}
