namespace GpuExclusive.Devices;

/// <summary>
/// The outcome of one <see cref="IHostRegistrar"/> call: <see cref="Code"/> 0 is success, anything else is the
/// backend's error code (a <c>CUresult</c> for CUDA) with <see cref="Message"/> naming the call and the error.
/// </summary>
internal readonly record struct RegistrarResult(int Code, string Message)
{
    internal static RegistrarResult Success => new(0, "success");

    internal bool Succeeded => Code == 0;

    public override string ToString() => Message;
}
