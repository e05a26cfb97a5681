using GpuExclusive.Devices;

namespace GpuExclusive.Tests.Native;

/// <summary>
/// An <see cref="IHostRegistrar"/> that behaves like the CUDA driver where the registry's correctness depends on it:
/// one registration per range per process (registering any byte twice fails "already registered"), unregistering by
/// base address only (anything else fails "not registered"), and a registration lives only as long as the primary
/// context it was made in. It also insists on what the registry promises: register and unregister inside a retained
/// primary context, and unregister inside the very context that registered. Thread-safe; counts every call.
/// </summary>
internal sealed class FakeHostRegistrar : IHostRegistrar
{
    /// <summary><c>CUDA_ERROR_INVALID_VALUE</c>.</summary>
    internal const int InvalidValue = 1;
    /// <summary><c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    internal const int OutOfMemory = 2;
    /// <summary><c>CUDA_ERROR_INVALID_CONTEXT</c>.</summary>
    internal const int InvalidContext = 201;
    /// <summary><c>CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED</c>.</summary>
    internal const int AlreadyRegistered = 712;
    /// <summary><c>CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED</c>.</summary>
    internal const int NotRegistered = 713;

    /// <summary>What the fake adds to a host address to make its device address (so a test can tell them apart).</summary>
    internal const long DeviceOffset = 0x1_0000_0000_0000;

    private readonly Lock _lock = new();
    private readonly Dictionary<nint, (HostRange Range, nint Context)> _registered = [];
    private readonly Dictionary<int, int> _retains = [];
    private int _registers;
    private int _unregisters;
    private int _retainCalls;
    private int _releaseCalls;

    /// <summary>A non-zero error code makes the next <see cref="Register"/> fail with it (once).</summary>
    internal int FailNextRegister { get; set; }

    /// <summary>A non-zero error code makes every <see cref="Unregister"/> fail with it, leaving the range registered.</summary>
    internal int FailUnregister { get; set; }

    /// <summary>Makes every <see cref="Unregister"/> throw, as a binding with a missing entry point would.</summary>
    internal bool ThrowOnUnregister { get; set; }

    /// <summary>A non-zero error code makes the next <see cref="RetainPrimaryContext"/> fail with it (once).</summary>
    internal int FailNextRetain { get; set; }

    /// <summary>Successful registrations so far.</summary>
    internal int Registers => Volatile.Read(ref _registers);

    /// <summary>Successful unregistrations so far.</summary>
    internal int Unregisters => Volatile.Read(ref _unregisters);

    internal int RetainCalls => Volatile.Read(ref _retainCalls);

    internal int ReleaseCalls => Volatile.Read(ref _releaseCalls);

    /// <summary>Every context the device pointer was asked in.</summary>
    internal List<nint> DevicePointerContexts { get; } = [];

    /// <summary>Ranges registered now.</summary>
    internal int RegisteredCount
    {
        get
        {
            lock (_lock)
            {
                return _registered.Count;
            }
        }
    }

    /// <summary>The handle the fake gives device <paramref name="device"/>'s primary context.</summary>
    internal static nint ContextOf(int device) => 0x7000 + device;

    internal bool IsRegistered(HostRange range)
    {
        lock (_lock)
        {
            return _registered.TryGetValue(range.Pointer, out var entry) && entry.Range == range;
        }
    }

    /// <summary>Retains outstanding on device <paramref name="device"/>'s primary context.</summary>
    internal int Retained(int device)
    {
        lock (_lock)
        {
            return _retains.GetValueOrDefault(device);
        }
    }

    public RegistrarResult RetainPrimaryContext(int device, out nint context)
    {
        lock (_lock)
        {
            context = 0;
            if (FailNextRetain != 0)
            {
                var code = FailNextRetain;
                FailNextRetain = 0;
                return new RegistrarResult(code, $"fake cuDevicePrimaryCtxRetain failed with {code}");
            }

            _retainCalls++;
            _retains[device] = _retains.GetValueOrDefault(device) + 1;
            context = ContextOf(device);
            return RegistrarResult.Success;
        }
    }

    public RegistrarResult ReleasePrimaryContext(int device)
    {
        lock (_lock)
        {
            if (_retains.GetValueOrDefault(device) == 0)
            {
                return new RegistrarResult(InvalidContext, "fake cuDevicePrimaryCtxRelease: the primary context is not retained");
            }

            _releaseCalls++;
            if (--_retains[device] == 0)
            {
                // The last release destroys the primary context, and with it what was registered inside it.
                foreach (var pointer in _registered.Where(r => r.Value.Context == ContextOf(device)).Select(r => r.Key).ToList())
                {
                    _registered.Remove(pointer);
                }
            }

            return RegistrarResult.Success;
        }
    }

    public RegistrarResult Register(nint context, HostRange range)
    {
        Thread.SpinWait(20); // widen the window a registry without its own serialization would race in
        lock (_lock)
        {
            if (!IsLiveLocked(context))
            {
                return new RegistrarResult(InvalidContext, $"fake cuMemHostRegister: context 0x{context:x} is not a retained primary context");
            }

            if (FailNextRegister != 0)
            {
                var code = FailNextRegister;
                FailNextRegister = 0;
                return new RegistrarResult(code, $"fake cuMemHostRegister failed with {code}");
            }

            if (_registered.Values.Any(r => r.Range.Overlaps(range)))
            {
                return new RegistrarResult(AlreadyRegistered, "fake cuMemHostRegister: part or all of the requested memory range is already mapped (already registered)");
            }

            _registered.Add(range.Pointer, (range, context));
            _registers++;
            return RegistrarResult.Success;
        }
    }

    public RegistrarResult Unregister(nint context, nint pointer)
    {
        Thread.SpinWait(20);
        if (ThrowOnUnregister)
        {
            throw new EntryPointNotFoundException("fake: cuMemHostUnregister is missing");
        }

        lock (_lock)
        {
            if (FailUnregister != 0)
            {
                return new RegistrarResult(FailUnregister, $"fake cuMemHostUnregister failed with {FailUnregister}");
            }

            if (!_registered.TryGetValue(pointer, out var entry))
            {
                return new RegistrarResult(NotRegistered, "fake cuMemHostUnregister: pointer does not correspond to a registered memory region (not registered)");
            }

            if (entry.Context != context || !IsLiveLocked(context))
            {
                return new RegistrarResult(InvalidContext, $"fake cuMemHostUnregister: called in context 0x{context:x}, registered in 0x{entry.Context:x}");
            }

            _registered.Remove(pointer);
            _unregisters++;
            return RegistrarResult.Success;
        }
    }

    public RegistrarResult DevicePointer(nint context, nint pointer, out nint devicePointer)
    {
        lock (_lock)
        {
            DevicePointerContexts.Add(context);
            devicePointer = 0;
            var start = (ulong)pointer;
            if (!_registered.Values.Any(r => r.Range.Start <= start && start < r.Range.End))
            {
                return new RegistrarResult(InvalidValue, "fake cuMemHostGetDevicePointer: not registered");
            }

            devicePointer = (nint)(pointer + DeviceOffset);
            return RegistrarResult.Success;
        }
    }

    private bool IsLiveLocked(nint context) => _retains.Any(r => r.Value > 0 && ContextOf(r.Key) == context);
}
