using System.Runtime.ExceptionServices;

namespace GpuExclusive.Tests;

/// <summary>
/// A dedicated thread running one body, for tests of locks (whose behaviour depends on which thread calls). An
/// exception on it is kept and rethrown by <see cref="Join"/> on the test's thread: thrown on the worker, it would
/// take the test host down.
/// </summary>
internal sealed class TestThread
{
    private readonly Thread _thread;
    private ExceptionDispatchInfo? _failure;

    private TestThread(Action body)
    {
        _thread = new Thread(() =>
        {
            try
            {
                body();
            }
            catch (Exception ex)
            {
                _failure = ExceptionDispatchInfo.Capture(ex);
            }
        })
        { IsBackground = true };
    }

    internal static TestThread Start(Action body)
    {
        var thread = new TestThread(body);
        thread._thread.Start();
        return thread;
    }

    /// <summary>Waits up to <paramref name="timeout"/>; false when the body is still running. Rethrows what the body threw.</summary>
    internal bool Join(TimeSpan timeout)
    {
        if (!_thread.Join(timeout))
        {
            return false;
        }

        _failure?.Throw();
        return true;
    }
}
