using System.CommandLine;

namespace GpuExclusive.Cli.Commands;

/// <summary>
/// Commands named in the design whose work arrives with a later issue. They exist now so that <c>--help</c> shows
/// the whole tool; running one exits with code 2 so that no script mistakes "not built yet" for a result.
/// </summary>
internal static class LaterCommands
{
    public static Command Bench(CliContext context) =>
        Placeholder(context, "bench", "Quick side-by-side figures against raw memory. Not built yet: comes with a later issue; see bench/ for BenchmarkDotNet.",
            "'bench' is not built yet: quick figures come with a later issue (the BenchmarkDotNet suite is in bench/)");

    private static Command Placeholder(CliContext context, string name, string description, string message)
    {
        var command = new Command(name, description);
        command.SetAction(_ =>
        {
            context.Stderr.WriteLine($"gpux: {message}");
            return ExitCodes.BadInput;
        });
        return command;
    }
}
