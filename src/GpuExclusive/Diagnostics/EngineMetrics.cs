using System.Diagnostics.Metrics;

namespace GpuExclusive.Diagnostics;

/// <summary>
/// The <c>GpuExclusive</c> meter, so <c>dotnet-counters monitor --counters GpuExclusive</c> can watch a run.
/// <see cref="Counter{T}.Add(T)"/> costs a check of a field when nobody listens, so hot paths may call it.
/// </summary>
internal static class EngineMetrics
{
    internal const string MeterName = "GpuExclusive";

    internal static readonly Meter Meter = new(MeterName, "1.0");

    internal static readonly Counter<long> CpuFaults = Meter.CreateCounter<long>("gpux.cpu.faults", "{fault}", "CPU accesses that took the fault path");
    internal static readonly Counter<long> DemandZeroFaults = Meter.CreateCounter<long>("gpux.cpu.demand_zero", "{page}", "Pages allocated zeroed on first touch");
    internal static readonly Counter<long> CowCopies = Meter.CreateCounter<long>("gpux.cpu.cow_copies", "{page}", "Write faults that copied a shared frame");
    internal static readonly Counter<long> CowReuses = Meter.CreateCounter<long>("gpux.cpu.cow_reuses", "{page}", "Write faults that reused a frame the space alone maps");
    internal static readonly Counter<long> NotifierInvalidations = Meter.CreateCounter<long>("gpux.notifier.invalidations", "{range}", "Invalidation ranges sent to MMU notifiers");
    internal static readonly Counter<long> Shootdowns = Meter.CreateCounter<long>("gpux.tlb.shootdowns", "{flush}", "Software TLB shootdowns");
    internal static readonly Counter<long> Grants = Meter.CreateCounter<long>("gpux.exclusive.grants", "{page}", "Pages converted to device-exclusive entries");
    internal static readonly Counter<long> Revocations = Meter.CreateCounter<long>("gpux.exclusive.revocations", "{page}", "Device-exclusive entries restored by a CPU access or fork");
    internal static readonly Counter<long> DeviceFaults = Meter.CreateCounter<long>("gpux.device.faults", "{page}", "Device faults serviced (pages an atomic batch lacked permission for)");
    internal static readonly Counter<long> Replays = Meter.CreateCounter<long>("gpux.device.replays", "{launch}", "Kernel relaunches to replay pending ops");
    internal static readonly Counter<long> ResidentCopiesIn = Meter.CreateCounter<long>("gpux.resident.copies_in", "{page}", "Pages a grant copied into device memory (device-resident placement)");
    internal static readonly Counter<long> ResidentWriteBacks = Meter.CreateCounter<long>("gpux.resident.write_backs", "{page}", "Resident pages a revocation copied back to their frames");
    internal static readonly Counter<long> ResidentDrops = Meter.CreateCounter<long>("gpux.resident.drops", "{page}", "Resident pages freed without a copy back (unmap, discard, teardown)");
    internal static readonly Counter<long> ResidentEvictions = Meter.CreateCounter<long>("gpux.resident.evictions", "{page}", "Resident pages handed back to the CPU to make room in device memory");
    internal static readonly Counter<long> Forks = Meter.CreateCounter<long>("gpux.forks", "{fork}", "Address spaces forked");
}
