using GpuExclusive.Cli;
using Spectre.Console;

// Live progress only when a person is watching: a redirected stdout gets plain, greppable lines.
bool interactive = !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
return GpuxCli.Run(args, Console.Out, Console.Error, environment: null, interactive);
