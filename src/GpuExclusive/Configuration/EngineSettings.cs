using Microsoft.Extensions.Logging;

namespace GpuExclusive;

/// <summary>
/// Engine settings as read from <c>runtimesettings.json</c>, <c>GPUX_</c> environment variables and command-line
/// options (see <see cref="EngineSettingsLoader"/>). Every value has been validated.
/// </summary>
public sealed class EngineSettings
{
    /// <summary>Default pool size: 16384 frames (64 MiB).</summary>
    public const long DefaultPoolPages = 16384;

    /// <summary>Default interval at which a callback waiting for a kernel to stop raises its stop flag again.</summary>
    public const int DefaultStopPollIntervalMicroseconds = 50;

    /// <summary>Default largest batch the resident kernel serves (larger ones get a launch of their own).</summary>
    public const int DefaultResidentBatchOps = 1024;

    /// <summary>
    /// Default time the resident kernel waits for the next batch before it is stopped: about what relaunching it costs
    /// on the CPU accelerator (100–400 µs), the ski-rental choice — polling longer than a relaunch costs buys nothing.
    /// </summary>
    public const int DefaultResidentIdleMicroseconds = 500;

    /// <summary>
    /// Default device quantum: 25 µs. A CPU access that finds a page the running batch was just granted waits at most
    /// this long (plus its own revocation), and the device gets at least this long with the page per grant: with a
    /// revocation and re-grant costing 5–15 µs on the CPU accelerator, a CPU reading the page in a tight loop leaves
    /// the batch about two thirds of its undisturbed speed.
    /// </summary>
    public const int DefaultDeviceQuantumMicroseconds = 25;

    /// <summary>Default time a host wait may see a device make no progress before the device is declared failed: 10 s.</summary>
    public const int DefaultDeviceTimeoutMilliseconds = 10_000;

    /// <summary>
    /// Default number of device-resident pages a device holds at once: 16384 (64 MiB of device memory, allocated when
    /// the first device-resident mirror is created).
    /// </summary>
    public const int DefaultDeviceResidentPages = 16384;

    /// <summary>Frames in the <see cref="PagePool"/> (key <c>Engine:PoolPages</c>, 1..2^31-1).</summary>
    public long PoolPages { get; init; } = DefaultPoolPages;

    /// <summary>Which accelerator to open (key <c>Engine:Accelerator</c>).</summary>
    public AcceleratorKind Accelerator { get; init; } = AcceleratorKind.Auto;

    /// <summary>Threads per kernel group; 0 sizes it to the device (key <c>Engine:KernelGroupSize</c>, 0..1024).</summary>
    public int KernelGroupSize { get; init; }

    /// <summary>Groups in the persistent kernel grid; 0 sizes it to the device (key <c>Engine:KernelGroups</c>, 0..65536).</summary>
    public int KernelGroups { get; init; }

    /// <summary>
    /// How often a callback waiting for a running kernel to stop (a device page-table swap, a teardown) wakes up to raise the stop flag again and
    /// check, in microseconds (key <c>Engine:StopPollIntervalMicroseconds</c>, 1..1000000). The kernels themselves poll
    /// the flag every 64 ops (never inside one). Values under 1000 re-raise once a millisecond (a monitor wait's
    /// resolution); the kernel's return wakes the waiter at once either way.
    /// </summary>
    public int StopPollIntervalMicroseconds { get; init; } = DefaultStopPollIntervalMicroseconds;

    /// <summary>
    /// Batches of at most this many ops run on the resident kernel — launched once, it waits on a doorbell in host-mapped
    /// memory and serves batch after batch, so a small batch costs no launch (key <c>Engine:ResidentBatchOps</c>,
    /// 0..65536; 0 turns the resident kernel off and every batch gets a launch).
    /// </summary>
    public int ResidentBatchOps { get; init; } = DefaultResidentBatchOps;

    /// <summary>
    /// How long the resident kernel waits for the next batch before it is stopped, in microseconds (key
    /// <c>Engine:ResidentIdleMicroseconds</c>, 1..10000000). While it waits it polls the doorbell: on ILGPU's CPU
    /// accelerator that is one busy core, so there the kernel leaves by itself after about this long of polling; on a
    /// GPU a host timer stops it (with about a millisecond of resolution).
    /// </summary>
    public int ResidentIdleMicroseconds { get; init; } = DefaultResidentIdleMicroseconds;

    /// <summary>
    /// How long a host wait on a device — a launch returning, the resident kernel reporting a batch, a kernel thread
    /// leaving a page being revoked, a kernel stopping — may see the device make no progress before the device is
    /// declared failed (<see cref="DeviceFailedException"/>), in milliseconds (key
    /// <c>Engine:DeviceTimeoutMilliseconds</c>, 1..3600000). Progress is the kernels' heartbeats, so a long batch that
    /// moves never trips it; a device that stops answering surfaces as an error within about this long, never as a hang.
    /// </summary>
    public int DeviceTimeoutMilliseconds { get; init; } = DefaultDeviceTimeoutMilliseconds;

    /// <summary>
    /// How long a page granted to serve a running batch's device fault stays with the device before a CPU access (or
    /// another device) may take it back, in microseconds (key <c>Engine:DeviceQuantumMicroseconds</c>, 0..1000000).
    /// Besides the quantum, the thread whose fault the grant served always gets to apply its op first. No wait for a
    /// page grows with the batch: a CPU access waits at most one quantum plus the revocation, and is served before the
    /// device can take the page again (docs/architecture.md, "device faults and the quantum").
    /// </summary>
    public int DeviceQuantumMicroseconds { get; init; } = DefaultDeviceQuantumMicroseconds;

    /// <summary>
    /// Where a device works on the pages it holds exclusively, for mirrors created without an explicit placement (key
    /// <c>Engine:PagePlacement</c>, <c>InPlace</c> or <c>DeviceResident</c>; see <see cref="GpuExclusive.PagePlacement"/>).
    /// </summary>
    public PagePlacement PagePlacement { get; init; } = PagePlacement.InPlace;

    /// <summary>
    /// How many pages a device keeps in its own memory at once for device-resident mirrors, in 4 KiB pages (key
    /// <c>Engine:DeviceResidentPages</c>, 1..16777216). A grant past it first hands the least recently used resident
    /// pages back to the CPU (written back to their frames); a grant larger than the whole budget maps the rest in place.
    /// </summary>
    public int DeviceResidentPages { get; init; } = DefaultDeviceResidentPages;

    /// <summary>
    /// Whether a launched batch's ops and old values live in the device's own memory — copied in before the launch and
    /// out after it — rather than in host-mapped memory the kernel reads across PCIe op by op (docs/architecture.md,
    /// "batch bookkeeping in device memory"). Null, the default, chooses by accelerator: on for a GPU, off for the CPU
    /// accelerator, where "device memory" is host memory too and the copy is pure cost. Tests force it on there.
    /// </summary>
    internal bool? BookkeepingInDeviceMemory { get; init; }

    /// <summary>Minimum log level for every category without its own entry (key <c>Logging:LogLevel:Default</c>).</summary>
    public LogLevel DefaultLogLevel { get; init; } = LogLevel.Warning;

    /// <summary>Per-category minimum levels (keys <c>Logging:LogLevel:&lt;category prefix&gt;</c>), as in ASP.NET Core.</summary>
    public IReadOnlyDictionary<string, LogLevel> CategoryLogLevels { get; init; } =
        new Dictionary<string, LogLevel>(StringComparer.OrdinalIgnoreCase);

    /// <summary>Every effective value with the layer it came from, in key order.</summary>
    public IReadOnlyList<SettingValue> Values { get; init; } = [];
}
