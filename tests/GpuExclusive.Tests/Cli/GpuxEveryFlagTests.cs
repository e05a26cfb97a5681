using System.Collections;
using System.CommandLine;
using GpuExclusive.Cli;
using GpuExclusive.Tests.Configuration;

namespace GpuExclusive.Tests.Cli;

/// <summary>
/// Hostile values for every option of every gpux command (issue 6, item 3), generated from the real command tree by
/// each option's kind: a missing value, text where a number belongs, numbers too large for any type, out-of-range
/// values from <see cref="Ranges"/>, empty and blank strings, "--switch=maybe", folders and impossible paths for path
/// options. Each must exit 2 with exactly one line on stderr that starts "gpux: " and names the option, before any
/// work starts (nothing on stdout). A guard fails naming an option that has no hostile cases.
/// </summary>
[Collection(GpuxCollection.Name)]
public sealed class GpuxEveryFlagTests : IDisposable
{
    /// <summary>Values outside each numeric option's documented range (beyond the type-generic junk every number gets).</summary>
    private static readonly Dictionary<string, string[]> Ranges = new()
    {
        ["stress --seconds"] = ["0", "-1", "86401", "2147483648"],
        ["stress --ops"] = ["0", "-5", "9223372036854775808"],
        ["stress --seed"] = ["-1", "2147483648", "-2147483649"],
        ["stress --pages"] = ["0", "-1", "1000001"],
        ["stress --cpu-threads"] = ["0", "-1", "257"],
        ["stress --devices"] = ["-1", "5"],
        ["stress --watchdog-seconds"] = ["0", "3601"],
        ["info --pool-pages"] = ["0", "-1", "2147483648"],
        ["stress --pool-pages"] = ["0", "-1", "2147483648"],
        ["scenario --pool-pages"] = ["0", "-1", "2147483648"],
        ["bench --pool-pages"] = ["0", "-1", "2147483648"],
        ["bench --seconds"] = ["0", "-1", "0.0009", "60.001", "NaN", "Infinity", "-Infinity", "1e400"],
    };

    /// <summary>What each string option holds: the kind decides which hostile values it gets.</summary>
    private static readonly Dictionary<string, StringKind> StringKinds = new()
    {
        ["--config"] = StringKind.InputFile,
        ["--log-level"] = StringKind.Name,
        ["--accelerator"] = StringKind.Name,
        ["--placement"] = StringKind.Name,
        ["--json"] = StringKind.OutputFile,
        ["--plot"] = StringKind.OutputFolder,
        ["--filter"] = StringKind.Filter,
    };

    /// <summary>
    /// Arguments that keep a command short should a hostile value wrongly be accepted (the test then fails on stdout
    /// rather than running for minutes); the option under test is left out of them.
    /// </summary>
    private static readonly Dictionary<string, string[]> Bounds = new()
    {
        ["gpux"] = [],
        ["info"] = [],
        ["stress"] = ["--seconds", "1", "--devices", "0", "--pages", "1", "--cpu-threads", "1"],
        ["scenario"] = [],
        ["bench"] = ["--filter", "metadata", "--seconds", "0.001"],
    };

    /// <summary>Positional arguments a command needs before its options mean anything.</summary>
    private static readonly Dictionary<string, string[]> Positionals = new() { ["scenario"] = ["exclusive"] };

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private enum StringKind
    {
        InputFile,
        OutputFile,
        OutputFolder,
        Name,
        Filter,
    }

    /// <summary>One hostile use of one option: the tokens that follow the command's other arguments.</summary>
    private sealed record FlagCase(string Command, string Option, string Name, Func<Scratch, string[]> Tokens)
    {
        public string Id => $"{Command} {Option}: {Name}";
    }

    /// <summary>Paths the path cases use: a folder, a regular file, and paths that cannot be created under that file.</summary>
    private sealed record Scratch(string Folder, string RegularFile)
    {
        public string UnderAFile => Path.Combine(RegularFile, "x.json");

        public string Missing => Path.Combine(Folder, "absent.json");

        public string InMissingFolder => Path.Combine(Folder, "no-such-folder", "report.json");
    }

    private static readonly Lazy<List<FlagCase>> AllCases = new(() => [.. EveryOption().SelectMany(o => CasesFor(o.Command, o.Option))]);

    public static TheoryData<string> Cases() => new(AllCases.Value.Select(c => c.Id));

    [Theory]
    [MemberData(nameof(Cases))]
    public void HostileValue_IsBadInput_OneLineNamingTheOption(string id)
    {
        var hostile = AllCases.Value.Single(c => c.Id == id);
        var scratch = MakeScratch();
        string[] args =
        [
            .. hostile.Command == "gpux" ? [] : (string[])[hostile.Command],
            .. Positionals.GetValueOrDefault(hostile.Command, []),
            .. WithoutOption(Bounds[hostile.Command], hostile.Option),
            .. hostile.Tokens(scratch),
        ];

        GpuxResult result = GpuxRunner.Run(new Hashtable(), args);

        string shown = string.Join(' ', args.Select(a => $"'{a}'"));
        Assert.True(result.ExitCode == ExitCodes.BadInput, $"gpux {shown}: exit {result.ExitCode}\nstdout: {Head(result.Stdout)}\nstderr: {result.Stderr}");
        string line = Assert.Single(result.StderrLines);
        Assert.StartsWith("gpux: ", line, StringComparison.Ordinal);
        Assert.True(line.Contains(hostile.Option, StringComparison.Ordinal), $"gpux {shown}: the line does not name {hostile.Option}: {line}");
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        Assert.True(result.Stdout.Length == 0, $"gpux {shown} started work before refusing: {Head(result.Stdout)}");
        Assert.False(File.Exists(scratch.Missing) || File.Exists(scratch.InMissingFolder), "a refused run left a file behind");
    }

    [Fact]
    public void EveryOption_OfEveryCommand_HasHostileCases()
    {
        var options = EveryOption().ToList();

        var uncovered = options.Where(o => CasesFor(o.Command, o.Option).Count == 0).Select(o => $"{o.Command} {o.Option.Name} ({o.Option.ValueType.Name})").ToList();
        var numericWithoutRange = options.Where(o => IsNumeric(o.Option) && !Ranges.ContainsKey($"{o.Command} {o.Option.Name}")).Select(o => $"{o.Command} {o.Option.Name}").ToList();
        var staleRanges = Ranges.Keys.Where(k => !options.Any(o => $"{o.Command} {o.Option.Name}" == k)).ToList();
        var staleKinds = StringKinds.Keys.Where(k => !options.Any(o => o.Option.Name == k)).ToList();

        Assert.True(uncovered.Count == 0, "options without hostile cases (give their value type or string kind cases): " + string.Join("; ", uncovered));
        Assert.True(numericWithoutRange.Count == 0, "numeric options without out-of-range values in Ranges: " + string.Join("; ", numericWithoutRange));
        Assert.True(staleRanges.Count + staleKinds.Count == 0, "table entries naming no option: " + string.Join("; ", staleRanges.Concat(staleKinds)));
        Assert.Equal(["bench", "info", "scenario", "stress"], options.Select(o => o.Command).Where(c => c != "gpux").Distinct().Order());
    }

    /// <summary>Every option of the real command tree, with the command it belongs to ("gpux" for the root's own).</summary>
    private static IEnumerable<(string Command, Option Option)> EveryOption()
    {
        RootCommand root = GpuxCli.BuildRoot(new CliContext(TextWriter.Null, TextWriter.Null, new Hashtable(), interactive: false));
        foreach (Option option in root.Options)
            yield return ("gpux", option);
        foreach (Command command in root.Subcommands)
        {
            Assert.Empty(command.Subcommands); // a nested command would need its own walk
            foreach (Option option in command.Options)
                yield return (command.Name, option);
        }
    }

    private static bool IsNumeric(Option option) =>
        (Nullable.GetUnderlyingType(option.ValueType) ?? option.ValueType) is var t && (t == typeof(int) || t == typeof(long) || t == typeof(double));

    private static List<FlagCase> CasesFor(string command, Option option)
    {
        string name = option.Name;
        var cases = new List<FlagCase>();
        void Add(string what, Func<Scratch, string[]> tokens) => cases.Add(new FlagCase(command, name, what, tokens));
        void Value(string what, string value) => Add(what, _ => [name, value]);

        Type type = Nullable.GetUnderlyingType(option.ValueType) ?? option.ValueType;
        if (option.Arity.MaximumNumberOfValues == 0)
        {
            // --help, --version: a value is junk.
            Add("given a value", _ => [$"{name}=maybe"]);
            Add("given an empty value", _ => [$"{name}="]);
            return cases;
        }

        if (type == typeof(bool))
        {
            Add("=maybe", _ => [$"{name}=maybe"]);
            Add("=2", _ => [$"{name}=2"]);
            Add("= (empty)", _ => [$"{name}="]);
            Add("followed by 'maybe'", _ => [name, "maybe"]);
            return cases;
        }

        Add("missing value (flag last)", _ => [name]);
        Add("= (empty)", _ => [$"{name}="]);
        if (IsNumeric(option))
        {
            Value("not a number", "abc");
            Value("empty string", "");
            Value("blank", " ");
            Value("hexadecimal", "0x10");
            Value("overflows every integer type", "99999999999999999999999");
            Value("negative overflow", "-99999999999999999999999");
            if (type != typeof(double))
            {
                Value("a fraction", "1.5");
                Value("an exponent", "1e3");
            }

            foreach (string outOfRange in Ranges.GetValueOrDefault($"{command} {name}", []))
                Value($"out of range {outOfRange}", outOfRange);
            return cases;
        }

        if (type != typeof(string) && type != typeof(string[]))
            return cases; // an unknown value type: the guard names the option

        if (!StringKinds.TryGetValue(name, out StringKind kind))
            return []; // a string option nobody classified: the guard names it

        Value("empty string", "");
        Value("blank", "  ");
        switch (kind)
        {
            case StringKind.InputFile:
                Add("a folder", s => [name, s.Folder]);
                Add("a missing file", s => [name, s.Missing]);
                Add("a path under a regular file", s => [name, s.UnderAFile]);
                break;
            case StringKind.OutputFile:
                Add("a folder", s => [name, s.Folder]);
                Add("a path under a regular file", s => [name, s.UnderAFile]);
                Add("a file in a missing folder", s => [name, s.InMissingFolder]);
                break;
            case StringKind.OutputFolder:
                Add("an existing regular file", s => [name, s.RegularFile]);
                Add("a path under a regular file", s => [name, s.UnderAFile]);
                break;
            case StringKind.Name:
                Value("an unknown name", "bogus");
                Value("a number", "1");
                Value("two names joined by a comma", name == "--log-level" ? "Debug,Trace" : "cpu,cuda");
                break;
            case StringKind.Filter:
                Value("only a comma", ",");
                Value("commas and blanks", " , ,");
                Value("a name that matches nothing", "nothing-matches-this");
                break;
        }

        return cases;
    }

    private Scratch MakeScratch()
    {
        string file = _temp.Write("not json, not a folder", "regular-file");
        return new Scratch(_temp.Path, file);
    }

    private static IEnumerable<string> WithoutOption(string[] bounds, string option)
    {
        for (int i = 0; i < bounds.Length; i += 2)
        {
            if (bounds[i] != option)
            {
                yield return bounds[i];
                yield return bounds[i + 1];
            }
        }
    }

    private static string Head(string text) => text.Length <= 300 ? text : text[..300] + "…";
}
