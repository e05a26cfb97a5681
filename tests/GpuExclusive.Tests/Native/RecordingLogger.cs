using Microsoft.Extensions.Logging;

namespace GpuExclusive.Tests.Native;

/// <summary>An <see cref="ILogger"/> that keeps every entry at every level, for tests that check what was logged. Thread-safe.</summary>
internal sealed class RecordingLogger : ILogger
{
    private readonly Lock _lock = new();
    private readonly List<Entry> _entries = [];

    internal IReadOnlyList<Entry> Entries
    {
        get
        {
            lock (_lock)
            {
                return [.. _entries];
            }
        }
    }

    /// <summary>The entries at <see cref="LogLevel.Warning"/> or above.</summary>
    internal IReadOnlyList<Entry> Problems => [.. Entries.Where(e => e.Level >= LogLevel.Warning)];

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lock)
        {
            _entries.Add(new Entry(logLevel, eventId.Id, formatter(state, exception), exception));
        }
    }

    internal sealed record Entry(LogLevel Level, int EventId, string Message, Exception? Exception);
}
