namespace GpuExclusive.Bench;

/// <summary>Which accelerator the device benchmarks open: <c>GPUX_ACCELERATOR</c> (auto, cpu, cuda), default auto.</summary>
internal static class DeviceBenchmarkEnvironment
{
    internal static AcceleratorKind Accelerator =>
        Enum.TryParse<AcceleratorKind>(Environment.GetEnvironmentVariable("GPUX_ACCELERATOR"), ignoreCase: true, out var kind) ? kind : AcceleratorKind.Auto;
}
