using System.Text;
using System.Text.RegularExpressions;
using GpuExclusive.Tests.Configuration;

namespace GpuExclusive.Tests.Engine;

/// <summary>
/// The library's layers point down only (docs/architecture.md, "layers"): a file in a lower layer never names a type
/// declared in a higher one. Layers are the folders of <c>src/GpuExclusive</c>; the check reads the source (comments and
/// string text stripped) so that it needs no compiler and names the file and the type it found.
/// </summary>
public sealed partial class LayeringTests
{
    /// <summary>The library's folders, lowest first. A file may use the types of its own folder and of those before it.</summary>
    internal static readonly string[] Layers =
    [
        "Native",        // P/Invoke
        "Diagnostics",   // logging, metrics, the registry the invariant checker reads
        "Configuration", // settings
        "Memory",        // the page pool and per-frame metadata
        "Paging",        // page tables, PTEs, VMAs, locks, TLB shootdown
        "Notifiers",     // MMU and interval notifiers
        "Space",         // the address space: CPU access, faults, fork, device-exclusive conversion and restore
        "Devices",       // devices, mirrors, kernels' host side
        "Invariants",    // the invariant checker, which reads every layer
    ];

    [Fact]
    public void EveryFileOfTheLibrary_IsInALayer()
    {
        var unlayered = SourceFiles().Where(file => LayerOf(file) < 0).Select(Relative).ToArray();

        Assert.True(unlayered.Length == 0, "files outside every layer folder: " + string.Join(", ", unlayered));
    }

    [Fact]
    public void NoFile_UsesATypeOfAHigherLayer()
    {
        var declaredIn = new Dictionary<string, int>(StringComparer.Ordinal);
        var files = SourceFiles().Where(file => LayerOf(file) >= 0).ToArray();
        foreach (var file in files)
        {
            foreach (Match declaration in TopLevelType().Matches(File.ReadAllText(file)))
            {
                declaredIn[declaration.Groups["name"].Value] = LayerOf(file);
            }
        }

        var violations = new List<string>();
        foreach (var file in files)
        {
            var layer = LayerOf(file);
            var code = StripCommentsAndStrings(File.ReadAllText(file));
            foreach (var name in Identifier().Matches(code).Select(m => m.Value).Distinct())
            {
                if (declaredIn.TryGetValue(name, out var owner) && owner > layer)
                {
                    violations.Add($"{Relative(file)} ({Layers[layer]}) uses {name} ({Layers[owner]})");
                }
            }
        }

        Assert.True(violations.Count == 0, "upward references:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void TheCheck_FindsAnUpwardReference_ButNotOneInACommentOrAString()
    {
        var code = StripCommentsAndStrings("""
            // DeviceMirror in a comment
            var text = "DeviceMirror in a string" + $"{DeviceMirror.Count} and DeviceMirror";
            /* DeviceMirror */ var mirror = default(DevicePageTable);
            """);

        var names = Identifier().Matches(code).Select(m => m.Value).ToArray();

        Assert.Contains("DevicePageTable", names);
        Assert.Equal(1, names.Count(n => n == "DeviceMirror")); // the interpolation hole, not the text
    }

    private static IEnumerable<string> SourceFiles() =>
        Directory.EnumerateFiles(Path.Combine(LibraryRoot(), "src", "GpuExclusive"), "*.cs", SearchOption.AllDirectories)
            .Where(file => !file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && !file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal));

    private static string LibraryRoot() => EngineSettingsLoaderTests.RepositoryRoot();

    private static string Relative(string file) => Path.GetRelativePath(Path.Combine(LibraryRoot(), "src", "GpuExclusive"), file);

    /// <summary>The layer of a file: the index of its top folder under <c>src/GpuExclusive</c>, or -1.</summary>
    private static int LayerOf(string file)
    {
        var parts = Relative(file).Split(Path.DirectorySeparatorChar);
        return parts.Length < 2 ? -1 : Array.IndexOf(Layers, parts[0]);
    }

    /// <summary>The code of a C# file with comments removed and string text blanked (interpolation holes kept).</summary>
    internal static string StripCommentsAndStrings(string source)
    {
        var output = new StringBuilder(source.Length);
        var i = 0;
        while (i < source.Length)
        {
            var c = source[i];
            if (c == '/' && i + 1 < source.Length && source[i + 1] == '/')
            {
                while (i < source.Length && source[i] != '\n')
                {
                    i++;
                }
            }
            else if (c == '/' && i + 1 < source.Length && source[i + 1] == '*')
            {
                var end = source.IndexOf("*/", i + 2, StringComparison.Ordinal);
                i = end < 0 ? source.Length : end + 2;
            }
            else if (c == '"' || (c is '$' or '@' && i + 1 < source.Length && source[i + 1] is '"' or '$' or '@'))
            {
                i = SkipString(source, i, output);
            }
            else if (c == '\'' && i + 2 < source.Length)
            {
                // A char literal: skip it ('"' must not start a string).
                var end = source.IndexOf('\'', source[i + 1] == '\\' ? i + 3 : i + 2);
                i = end < 0 ? source.Length : end + 1;
            }
            else
            {
                output.Append(c);
                i++;
            }
        }

        return output.ToString();
    }

    /// <summary>Skips a string literal starting at <paramref name="start"/>, appending its interpolation holes; returns the index after it.</summary>
    private static int SkipString(string source, int start, StringBuilder output)
    {
        var i = start;
        var interpolated = false;
        var verbatim = false;
        while (source[i] is '$' or '@')
        {
            interpolated |= source[i] == '$';
            verbatim |= source[i] == '@';
            i++;
        }

        var quotes = 0;
        while (i < source.Length && source[i] == '"')
        {
            quotes++;
            i++;
        }

        if (quotes == 2)
        {
            return i; // ""
        }

        var raw = quotes >= 3;
        var closing = new string('"', raw ? quotes : 1);
        while (i < source.Length)
        {
            if (!raw && !verbatim && source[i] == '\\')
            {
                i += 2;
                continue;
            }

            if (interpolated && source[i] == '{')
            {
                if (i + 1 < source.Length && source[i + 1] == '{')
                {
                    i += 2;
                    continue;
                }

                // A hole: keep its code up to the matching brace.
                var depth = 0;
                do
                {
                    if (source[i] == '{')
                    {
                        depth++;
                    }
                    else if (source[i] == '}')
                    {
                        depth--;
                    }

                    output.Append(source[i]);
                    i++;
                }
                while (i < source.Length && depth > 0);
                output.Append(' ');
                continue;
            }

            if (string.CompareOrdinal(source, i, closing, 0, closing.Length) == 0)
            {
                if (verbatim && !raw && i + 1 < source.Length && source[i + 1] == '"')
                {
                    i += 2; // "" inside a verbatim string
                    continue;
                }

                return i + closing.Length;
            }

            i++;
        }

        return i;
    }

    [GeneratedRegex(@"^(?:public|internal)\s+(?:(?:static|sealed|abstract|partial|readonly|unsafe|ref)\s+)*(?:class|struct|record\s+struct|record|enum|interface)\s+(?<name>\w+)", RegexOptions.Multiline)]
    private static partial Regex TopLevelType();

    [GeneratedRegex(@"\b[A-Z]\w*\b")]
    private static partial Regex Identifier();
}
