using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuExclusive.Diagnostics;

/// <summary>Creates the engine's loggers.</summary>
internal static class EngineLoggers
{
    /// <summary>
    /// The logger for <typeparamref name="T"/>'s category. With no factory, or the null factory, it is
    /// <see cref="NullLogger.Instance"/> itself rather than a <see cref="Logger{T}"/> wrapped around it: the fault and
    /// revocation paths log at Trace, and each of those checks would otherwise cost two interface calls for nothing.
    /// </summary>
    internal static ILogger Create<T>(ILoggerFactory? factory) =>
        factory is null or NullLoggerFactory ? NullLogger.Instance : factory.CreateLogger<T>();

    /// <summary>False for the null logger, which never logs: hot paths skip their log calls without asking it.</summary>
    internal static bool IsReal(ILogger logger) => logger is not NullLogger;
}
