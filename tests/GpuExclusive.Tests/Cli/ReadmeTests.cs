using System.Text.RegularExpressions;

namespace GpuExclusive.Tests.Cli;

/// <summary>The README's embedding example is exactly <see cref="ReadmeEmbeddingExample"/>, and it runs.</summary>
[Collection(GpuxCollection.Name)]
public sealed partial class ReadmeTests
{
    [Fact]
    public void EmbeddingExample_InTheReadme_IsTheCompiledExample()
    {
        string root = RepositoryRoot();
        string readme = File.ReadAllText(Path.Combine(root, "README.md")).ReplaceLineEndings("\n");
        string source = File.ReadAllText(Path.Combine(root, "tests", "GpuExclusive.Tests", "Cli", "ReadmeEmbeddingExample.cs")).ReplaceLineEndings("\n");

        Match quoted = ReadmeBlock().Match(readme);
        Assert.True(quoted.Success, "README.md has no ```csharp block after <!-- embedding-example -->");
        Match marked = SourceRegion().Match(source);
        Assert.True(marked.Success, "ReadmeEmbeddingExample.cs has no README:BEGIN/END region");
        string example = string.Join('\n', marked.Groups["body"].Value.TrimEnd('\n').Split('\n').Select(line => line.Length >= 8 ? line[8..] : line.TrimStart()));

        Assert.Equal(example, quoted.Groups["body"].Value.TrimEnd('\n'));
    }

    [Fact]
    public void EmbeddingExample_Runs_GrantingRunningAndRevoking()
    {
        var (granted, result, total, held) = ReadmeEmbeddingExample.Run();

        Assert.Equal(1, granted);
        Assert.Equal(2, result.Completed);
        Assert.Equal(0, result.DeviceFaults); // the grant came first, so the batch needed no fault
        Assert.Equal(6, total);
        Assert.Equal(0, held);
    }

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "GpuExclusive.sln")))
                return directory.FullName;
        }

        throw new InvalidOperationException("no GpuExclusive.sln above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"<!-- embedding-example -->\s*```csharp\nusing GpuExclusive;\n\n(?<body>.*?)```", RegexOptions.Singleline)]
    private static partial Regex ReadmeBlock();

    [GeneratedRegex(@"// README:BEGIN\n(?<body>.*?)\s*// README:END", RegexOptions.Singleline)]
    private static partial Regex SourceRegion();
}
