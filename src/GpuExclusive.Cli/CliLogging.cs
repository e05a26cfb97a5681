using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace GpuExclusive.Cli;

/// <summary>Console logging configured from <see cref="EngineSettings"/>.</summary>
internal static class CliLogging
{
    /// <summary>
    /// Creates a logger factory writing single-line entries to stderr, so stdout carries only the command's own
    /// output (tables, progress, JSON paths) and can be piped. Dispose it to flush the console queue.
    /// </summary>
    public static ILoggerFactory CreateFactory(EngineSettings settings) =>
        LoggerFactory.Create(builder =>
        {
            builder.SetMinimumLevel(settings.DefaultLogLevel);
            foreach (var (category, level) in settings.CategoryLogLevels)
                builder.AddFilter(category, level);
            builder.AddSimpleConsole(options =>
            {
                options.SingleLine = true;
                options.TimestampFormat = "HH:mm:ss.fff ";
                options.ColorBehavior = LoggerColorBehavior.Disabled;
            });
            builder.AddConsole(options => options.LogToStandardErrorThreshold = LogLevel.Trace);
        });
}
