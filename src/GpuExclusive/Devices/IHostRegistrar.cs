namespace GpuExclusive.Devices;

/// <summary>
/// The backend calls behind <see cref="PinnedHostRegistry"/>: CUDA's in production (<see cref="CudaHostRegistrar"/>),
/// a fake that behaves like it in tests, so the registry's counting is tested without a GPU. Failures come back as
/// error codes, not exceptions: the registry decides which ones throw and which ones are only logged.
/// </summary>
internal interface IHostRegistrar
{
    /// <summary>Retains the primary context of device <paramref name="device"/> (an ordinal) and gives its handle.</summary>
    RegistrarResult RetainPrimaryContext(int device, out nint context);

    /// <summary>Releases one retain of the primary context of device <paramref name="device"/>.</summary>
    RegistrarResult ReleasePrimaryContext(int device);

    /// <summary>Pins and maps <paramref name="range"/> (portable, device-mapped) with <paramref name="context"/> current.</summary>
    RegistrarResult Register(nint context, HostRange range);

    /// <summary>Unpins the registration whose base address is <paramref name="pointer"/>, with <paramref name="context"/> current.</summary>
    RegistrarResult Unregister(nint context, nint pointer);

    /// <summary>The device address of registered <paramref name="pointer"/> as kernels in <paramref name="context"/> see it.</summary>
    RegistrarResult DevicePointer(nint context, nint pointer, out nint devicePointer);
}
