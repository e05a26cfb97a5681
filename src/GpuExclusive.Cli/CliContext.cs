using System.Collections;
using Spectre.Console;

namespace GpuExclusive.Cli;

/// <summary>Where a command writes and what it reads from its surroundings; tests substitute every part.</summary>
internal sealed class CliContext
{
    public CliContext(TextWriter stdout, TextWriter stderr, IDictionary? environment, bool interactive)
    {
        Stdout = stdout;
        Stderr = stderr;
        Environment = environment;
        Interactive = interactive;
        Console = interactive
            ? AnsiConsole.Console
            : AnsiConsole.Create(new AnsiConsoleSettings
            {
                Out = new AnsiConsoleOutput(stdout),
                Ansi = AnsiSupport.No,
                ColorSystem = ColorSystemSupport.NoColors,
                Interactive = InteractionSupport.No,
            });
        if (!interactive)
            Console.Profile.Width = 120; // redirected output has no terminal width; keep tables on one line each
    }

    public TextWriter Stdout { get; }

    public TextWriter Stderr { get; }

    /// <summary>The environment for <c>GPUX_</c> variables; null means the process environment.</summary>
    public IDictionary? Environment { get; }

    /// <summary>True when a terminal is watching: live status display instead of periodic lines.</summary>
    public bool Interactive { get; }

    /// <summary>Spectre.Console over <see cref="Stdout"/> (plain text when not interactive).</summary>
    public IAnsiConsole Console { get; }
}
