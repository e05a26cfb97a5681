namespace GpuExclusive;

/// <summary>Which ILGPU accelerator an <c>ExclusiveDevice</c> runs on.</summary>
public enum AcceleratorKind
{
    /// <summary>Prefer a GPU (CUDA, then OpenCL); fall back to the CPU accelerator.</summary>
    Auto,
    /// <summary>ILGPU's CPU accelerator (kernels on host threads).</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through CUDA.</summary>
    Cuda,
    /// <summary>An OpenCL device that ILGPU accepts.</summary>
    OpenCL,
}
