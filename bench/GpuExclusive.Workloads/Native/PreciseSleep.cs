using System.Diagnostics;
using System.Runtime.InteropServices;

namespace GpuExclusive.Workloads.Native;

/// <summary>
/// Sleeps of microseconds: <see cref="Thread.Sleep(int)"/> counts whole milliseconds, and a spin would take a core
/// from the kernel threads the measurement is about (the CPU accelerator leaves the host one core).
/// </summary>
internal static partial class PreciseSleep
{
    /// <summary>
    /// Sleeps about <paramref name="microseconds"/> with <c>nanosleep</c> (Linux adds its timer slack, 50 µs for an
    /// ordinary thread); elsewhere yields until the time has passed.
    /// </summary>
    internal static void Microseconds(int microseconds)
    {
        if (microseconds <= 0)
        {
            return;
        }

        if (OperatingSystem.IsLinux())
        {
            var request = new Timespec { Seconds = microseconds / 1_000_000, Nanoseconds = microseconds % 1_000_000 * 1000L };
            _ = NanoSleep(request, 0); // interrupted by a signal: the sleep is only shorter
            return;
        }

        var until = Stopwatch.GetTimestamp() + (microseconds * Stopwatch.Frequency / 1_000_000);
        while (Stopwatch.GetTimestamp() < until)
        {
            Thread.Yield();
        }
    }

    /// <summary>struct timespec (64-bit Linux: two longs).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    // int nanosleep(const struct timespec *req, struct timespec *rem)
    [LibraryImport("libc", EntryPoint = "nanosleep")]
    private static partial int NanoSleep(in Timespec request, nint remaining);
}
