using static GpuExclusive.Cli.Stress.CounterLayout;

namespace GpuExclusive.Cli.Stress;

/// <summary>The pool-pressure thread of <c>--inject</c>: grants and discards of its own pages in a pool kept small.</summary>
internal sealed partial class StressWorkload
{
    /// <summary>
    /// Pool pressure (<c>--inject</c>): fills its own pages, has a device take them, discards them under load and checks
    /// that both the CPU and the device then see fresh zeros, while the pool is as small as the run allows.
    /// </summary>
    private void PressureLoop(ThreadActivity activity)
    {
        var random = SplitMix64.ForThread(_options.Seed, MaxWorkers + 17);
        const int pages = StressOptions.PressurePages;
        Span<byte> probe = stackalloc byte[sizeof(long)];
        long pattern = 0x9E55_0000L << 32;
        while (!_stop)
        {
            int first = random.NextInt(pages);
            int count = 1 + random.NextInt(pages - first);
            ulong start = _pressure + ((ulong)first * PagePool.PageSize);
            ulong length = (ulong)count * PagePool.PageSize;
            activity.Enter("pressure: fill", start);
            for (int p = first; p < first + count; p++)
                _space.Write(_pressure + ((ulong)p * PagePool.PageSize), ++pattern);

            if (_mirrors.Length > 0)
            {
                DeviceMirror mirror = _mirrors[random.NextInt(_mirrors.Length)];
                activity.Enter("pressure: MakeExclusive", start);
                mirror.MakeExclusive(start, length);
                activity.Enter("pressure: device read", start);
                if (mirror.Read(start, probe) != DeviceStatus.Ok || BitConverter.ToInt64(probe) != pattern - count + 1)
                    Violate($"pressure: the device reads 0x{BitConverter.ToInt64(probe):x} at 0x{start:x}, the CPU wrote 0x{pattern - count + 1:x}", Invariants.DeviceBehaviour);
            }

            activity.Enter("pressure: Discard", start);
            _space.Discard(start, length);
            activity.Enter("pressure: check zeros", start);
            for (int p = first; p < first + count; p++)
            {
                ulong address = _pressure + ((ulong)p * PagePool.PageSize);
                long value = _space.Read<long>(address + PagePool.PageSize - sizeof(long));
                if (value != 0)
                    Violate($"pressure: page 0x{address:x} reads 0x{value:x} after Discard, not zero", Invariants.CpuConsistency);
            }

            if (_mirrors.Length > 0)
            {
                DeviceMirror mirror = _mirrors[random.NextInt(_mirrors.Length)];
                if (mirror.Read(start, probe) != DeviceStatus.Ok || BitConverter.ToInt64(probe) != 0)
                    Violate($"pressure: the device reads 0x{BitConverter.ToInt64(probe):x} at 0x{start:x} after Discard, not zero", Invariants.DeviceBehaviour);
            }

            Interlocked.Increment(ref _pressureDiscards);
            activity.Enter("sleeping");
            Thread.Sleep(random.NextInt(2));
        }
    }
}
