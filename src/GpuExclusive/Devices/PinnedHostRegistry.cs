using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace GpuExclusive.Devices;

/// <summary>
/// The process's pinned (page-locked, device-mapped) host ranges, reference-counted. CUDA keeps one registration per
/// range per process, not per context: a second <c>cuMemHostRegister</c> of a registered range fails with
/// <c>CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED</c>, and the first <c>cuMemHostUnregister</c> ends it for everyone.
/// So every zero-copy binding of host memory goes through here: the first <see cref="Acquire"/> of a range registers
/// it, further ones only count, and the last lease's dispose unregisters it, in whatever order leases are disposed.
/// </summary>
/// <remarks>
/// <para>
/// A range is registered and unregistered inside the primary context of the device that first acquired it, retained
/// by the registry for as long as it holds a range registered through it: never inside an ILGPU accelerator's own
/// context, since ILGPU destroys that one when its accelerator is disposed, and a registration does not outlive the
/// context that made it (cuMemHostUnregister then fails with "not registered") while other devices may still use the
/// range. Registrations are portable (<c>CU_MEMHOSTREGISTER_PORTABLE</c>), so every context of the process sees the
/// range as pinned; a lease gives the device address for a given context.
/// </para>
/// <para>
/// A range that overlaps a registered one without being identical is refused: CUDA would refuse it too, and
/// unregistering either would unpin part of the other. All members are thread-safe; the driver calls are made under
/// one lock, so a second acquirer of a range waits until the first one's registration is complete. Nothing under
/// that lock calls into ILGPU's accelerator locks, while a buffer's disposal (under its accelerator's lock, maybe on
/// the finalizer thread) takes it: one lock order, no deadlock.
/// </para>
/// </remarks>
internal sealed class PinnedHostRegistry(IHostRegistrar registrar)
{
    private static readonly Lazy<PinnedHostRegistry> SharedRegistry = new(() => new PinnedHostRegistry(new CudaHostRegistrar()));

    // Guards _ranges and _devices, and serializes the registrar calls that change them.
    private readonly Lock _lock = new();
    private readonly Dictionary<HostRange, Registration> _ranges = [];
    private readonly Dictionary<int, PrimaryContext> _devices = [];

    /// <summary>The process's registry over the CUDA driver (creating it loads nothing; the first acquire does).</summary>
    internal static PinnedHostRegistry Shared => SharedRegistry.Value;

    /// <summary>Ranges registered now.</summary>
    internal int Count
    {
        get
        {
            lock (_lock)
            {
                return _ranges.Count;
            }
        }
    }

    /// <summary>Live leases on <paramref name="range"/>; 0 when it is not registered.</summary>
    internal int LeasesOn(HostRange range)
    {
        lock (_lock)
        {
            return _ranges.TryGetValue(range, out var registration) ? registration.Leases : 0;
        }
    }

    /// <summary>
    /// Pins <paramref name="range"/> for device <paramref name="device"/> (an ordinal): registers it if no lease holds
    /// it, else only counts. Dispose the lease when the device no longer uses the memory, and before the memory is freed.
    /// </summary>
    /// <param name="logger">Where the lease's release reports a driver error it cannot throw.</param>
    /// <exception cref="InvalidOperationException">
    /// The range overlaps a registered range without being identical to it, or the driver refused to register it.
    /// </exception>
    internal PinnedHostLease Acquire(HostRange range, int device, ILogger logger)
    {
        range.Validate();
        ArgumentNullException.ThrowIfNull(logger);
        lock (_lock)
        {
            if (_ranges.TryGetValue(range, out var registration))
            {
                registration.Leases++;
                return new PinnedHostLease(this, registration, logger);
            }

            foreach (var other in _ranges.Keys)
            {
                if (other.Overlaps(range))
                {
                    throw new InvalidOperationException(
                        $"cannot pin host range {range}: it overlaps the pinned range {other} without being identical to it (CUDA registers a range once per process and unregisters it by base address, so overlapping registrations cannot be shared)");
                }
            }

            var primary = RetainLocked(device);
            RegistrarResult result;
            try
            {
                result = registrar.Register(primary.Context, range);
            }
            catch
            {
                DropIfUnusedLocked(device, primary, logger);
                throw;
            }

            if (!result.Succeeded)
            {
                DropIfUnusedLocked(device, primary, logger);
                throw new InvalidOperationException($"cannot pin host range {range} for device {device}: {result}");
            }

            primary.Ranges++;
            registration = new Registration(range, device, primary.Context);
            _ranges.Add(range, registration);
            DeviceLog.Pinned(logger, range.Start, range.End, device);
            return new PinnedHostLease(this, registration, logger);
        }
    }

    /// <summary>The device address of a leased range in <paramref name="context"/>.</summary>
    /// <exception cref="InvalidOperationException">The driver gave none.</exception>
    internal nint DevicePointer(HostRange range, nint context)
    {
        var result = registrar.DevicePointer(context, range.Pointer, out var devicePointer);
        return result.Succeeded
            ? devicePointer
            : throw new InvalidOperationException($"no device address for pinned host range {range} in context 0x{context:x}: {result}");
    }

    /// <summary>
    /// Drops one lease of <paramref name="registration"/>; the last one unregisters the range (and releases the primary
    /// context when it was the device's last range). Driver errors are logged, not thrown: the caller is a dispose.
    /// The bookkeeping is done before the driver is called, so an exception from the registrar leaves it consistent.
    /// </summary>
    internal void Release(Registration registration, ILogger logger)
    {
        lock (_lock)
        {
            if (--registration.Leases > 0)
            {
                return;
            }

            var range = registration.Range;
            _ranges.Remove(range);
            var primary = _devices[registration.Device];
            primary.Ranges--;
            try
            {
                var result = registrar.Unregister(registration.Context, range.Pointer);
                if (result.Succeeded)
                {
                    DeviceLog.Unpinned(logger, range.Start, range.End, registration.Device);
                }
                else
                {
                    DeviceLog.UnpinFailed(logger, range.Start, range.End, registration.Device, result.Code, result.Message);
                }
            }
            finally
            {
                DropIfUnusedLocked(registration.Device, primary, logger);
            }
        }
    }

    private PrimaryContext RetainLocked(int device)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the registry is guarded by its lock");
        if (_devices.TryGetValue(device, out var primary))
        {
            return primary;
        }

        var result = registrar.RetainPrimaryContext(device, out var context);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"cannot pin host memory for device {device}: retaining its primary context failed: {result}");
        }

        primary = new PrimaryContext(context);
        _devices.Add(device, primary);
        return primary;
    }

    /// <summary>Releases the device's primary context if no registered range needs it any more.</summary>
    private void DropIfUnusedLocked(int device, PrimaryContext primary, ILogger logger)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the registry is guarded by its lock");
        if (primary.Ranges > 0)
        {
            return;
        }

        _devices.Remove(device);
        var result = registrar.ReleasePrimaryContext(device);
        if (!result.Succeeded)
        {
            DeviceLog.PrimaryContextReleaseFailed(logger, device, result.Code, result.Message);
        }
    }

    /// <summary>One registered range: the device and context it was registered through, and its live leases.</summary>
    internal sealed class Registration(HostRange range, int device, nint context)
    {
        internal HostRange Range { get; } = range;

        internal int Device { get; } = device;

        internal nint Context { get; } = context;

        internal int Leases { get; set; } = 1;
    }

    /// <summary>A retained primary context and the registered ranges that keep it retained.</summary>
    private sealed class PrimaryContext(nint context)
    {
        internal nint Context { get; } = context;

        internal int Ranges { get; set; }
    }
}
