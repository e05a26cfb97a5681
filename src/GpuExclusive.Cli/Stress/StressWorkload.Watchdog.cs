namespace GpuExclusive.Cli.Stress;

/// <summary>The watchdog thread: a thread stuck inside one operation ends the run with a dump of every thread, not a hang.</summary>
internal sealed partial class StressWorkload
{
    /// <summary>
    /// Fires when a thread has been inside one operation for longer than <c>--watchdog-seconds</c>: records what every
    /// thread is doing and stops the run.
    /// </summary>
    private void WatchdogLoop()
    {
        var limit = TimeSpan.FromSeconds(_options.WatchdogSeconds);
        TimeSpan period = TimeSpan.FromMilliseconds(Math.Clamp(limit.TotalMilliseconds / 4, 50, 1000));
        while (!_watchdogDone.Wait(period))
        {
            ThreadActivity? stuck = _activities.FirstOrDefault(a => !a.Finished && a.Busy > limit);
            if (stuck is null)
                continue;
            var dump = new List<string> { $"no progress for {limit.TotalSeconds:0} s in {stuck.Thread}; every thread:" };
            dump.AddRange(_activities.Select(a => "  " + a.Describe()));
            WatchdogDump = dump;
            Violate($"watchdog: {stuck.Describe()}", Invariants.Progress);
            return;
        }
    }
}
