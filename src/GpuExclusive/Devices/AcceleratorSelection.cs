using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace GpuExclusive;

/// <summary>One accelerator ILGPU can see, reduced to what selection and <c>gpux info</c> need.</summary>
/// <param name="Index">Position in <c>Context.Devices</c>.</param>
/// <param name="Kind">The engine's name for its backend, or null for a backend the engine does not drive.</param>
/// <param name="Type">ILGPU's accelerator type.</param>
/// <param name="Name">The device name.</param>
/// <param name="MemoryBytes">Device memory as ILGPU reports it.</param>
/// <param name="MaxThreadsPerGroup">Largest group the device accepts.</param>
/// <param name="MaxThreads">Threads the device runs at once (multiprocessors × threads per multiprocessor).</param>
internal readonly record struct AcceleratorCandidate(
    int Index, AcceleratorKind? Kind, AcceleratorType Type, string Name, long MemoryBytes, int MaxThreadsPerGroup, int MaxThreads);

/// <summary>The outcome of choosing an accelerator.</summary>
/// <param name="Kind">The backend chosen (or requested, when none was found).</param>
/// <param name="CandidateIndex">Index of the chosen device in the candidate list, or -1 when none matches.</param>
/// <param name="Reason">One sentence a user can read: why this device, or why none.</param>
internal readonly record struct AcceleratorChoice(AcceleratorKind Kind, int CandidateIndex, string Reason)
{
    public bool Found => CandidateIndex >= 0;
}

/// <summary>
/// Which accelerator <see cref="AcceleratorKind.Auto"/> and the explicit kinds resolve to. Auto prefers CUDA
/// (zero-copy host memory through <c>cuMemHostRegister</c>), else the CPU accelerator (OpenCL is skipped: no zero-copy view of the pool),
/// which always exists and is what CI runs. Within a kind the first device ILGPU lists wins, as CUDA's device 0 would.
/// </summary>
internal static class AcceleratorSelection
{
    // OpenCL is not in Auto's list: ILGPU's OpenCL backend cannot view the host page pool zero-copy, so an explicit
    // OpenCL request is refused with that reason (ExclusiveDevice.Open) and Auto goes straight to the CPU accelerator.
    private static readonly AcceleratorKind[] AutoPreference = [AcceleratorKind.Cuda, AcceleratorKind.Cpu];

    /// <summary>Lists every device of <paramref name="context"/> as a candidate.</summary>
    public static IReadOnlyList<AcceleratorCandidate> Describe(Context context)
    {
        var candidates = new List<AcceleratorCandidate>();
        int index = 0;
        foreach (Device device in context.Devices)
        {
            candidates.Add(new AcceleratorCandidate(
                index++, ToKind(device.AcceleratorType), device.AcceleratorType, device.Name,
                device.MemorySize, device.MaxNumThreadsPerGroup, device.MaxNumThreads));
        }

        return candidates;
    }

    /// <summary>The engine kind for an ILGPU accelerator type, or null for one the engine does not drive.</summary>
    public static AcceleratorKind? ToKind(AcceleratorType type) => type switch
    {
        AcceleratorType.Cuda => AcceleratorKind.Cuda,
        AcceleratorType.OpenCL => AcceleratorKind.OpenCL,
        AcceleratorType.CPU => AcceleratorKind.Cpu,
        _ => null,
    };

    /// <summary>Chooses the device for <paramref name="requested"/> among <paramref name="candidates"/>.</summary>
    public static AcceleratorChoice Choose(AcceleratorKind requested, IReadOnlyList<AcceleratorCandidate> candidates)
    {
        if (requested != AcceleratorKind.Auto)
        {
            int index = FirstOfKind(requested, candidates);
            return index >= 0
                ? new AcceleratorChoice(requested, index, $"{requested} was requested; using the first {requested} device")
                : new AcceleratorChoice(requested, -1, $"{requested} was requested but ILGPU sees no {requested} device");
        }

        var skipped = new List<string>();
        foreach (AcceleratorKind kind in AutoPreference)
        {
            int index = FirstOfKind(kind, candidates);
            if (index >= 0)
            {
                string reason = skipped.Count == 0
                    ? $"Auto prefers {kind} and one is present"
                    : $"Auto prefers Cuda, then Cpu (OpenCL cannot map the page pool zero-copy); no {string.Join(" or ", skipped)} device is visible";
                return new AcceleratorChoice(kind, index, reason);
            }

            skipped.Add(kind.ToString());
        }

        return new AcceleratorChoice(AcceleratorKind.Cpu, -1, "ILGPU lists no accelerator at all, not even the CPU accelerator");
    }

    /// <summary>
    /// An ILGPU context holding what <paramref name="requested"/> may open: ILGPU's CPU accelerator always (sized to the
    /// machine, less one core for the host), CUDA for Auto and Cuda, OpenCL only when asked for (to say why it is refused).
    /// </summary>
    /// <remarks>
    /// The CPU accelerator gets one multiprocessor per core but one, each running one kernel thread (a group of one; ILGPU's
    /// warps have two lanes at least). ILGPU's default 16 worker threads spin against each other on small machines, and
    /// kernel threads on every core left none for the threads that revoke pages and service the kernel's faults — a GPU
    /// never takes the host's cores, and the CPU accelerator stands in for one (docs/architecture.md).
    /// </remarks>
    public static Context CreateContext(AcceleratorKind requested)
    {
        var cores = Environment.ProcessorCount;
        var cpu = new CPUDevice(numThreadsPerWarp: 2, numWarpsPerMultiprocessor: 1, numMultiprocessors: Math.Max(1, cores - 1));
        return Context.Create(builder =>
        {
            builder.CPU(cpu);
            if (requested is AcceleratorKind.Auto or AcceleratorKind.Cuda)
            {
                builder.Cuda();
            }

            if (requested is AcceleratorKind.OpenCL)
            {
                builder.OpenCL();
            }
        });
    }

    /// <summary>
    /// Opens the accelerator <see cref="Choose"/> picks for <paramref name="requested"/> — the one decision both
    /// <c>ExclusiveDevice.Open</c> and <c>gpux info</c> report — and checks ILGPU created that backend.
    /// </summary>
    /// <exception cref="NotSupportedException">No device of the requested kind, or OpenCL (it cannot work zero-copy).</exception>
    public static (Accelerator Accelerator, AcceleratorKind Kind, string Reason) Open(Context context, AcceleratorKind requested)
    {
        var candidates = Describe(context);
        var choice = Choose(requested, candidates);
        if (requested == AcceleratorKind.OpenCL)
        {
            throw new NotSupportedException(choice.Found
                ? "OpenCL was requested, but ILGPU's OpenCL backend cannot map the host page pool zero-copy, and GpuExclusive does not copy pages behind your back; use Cuda or Cpu"
                : "OpenCL was requested but ILGPU accepts no OpenCL device here (none present, or none with generic address space support)");
        }

        if (!choice.Found)
        {
            throw new NotSupportedException(requested == AcceleratorKind.Cuda
                ? "CUDA was requested but ILGPU finds no CUDA device (no NVIDIA GPU or driver on this machine); use Cpu or Auto"
                : choice.Reason);
        }

        var accelerator = context.Devices[candidates[choice.CandidateIndex].Index].CreateAccelerator(context);
        var actual = ToKind(accelerator.AcceleratorType);
        if (actual != choice.Kind)
        {
            var type = accelerator.AcceleratorType;
            accelerator.Dispose();
            throw new NotSupportedException($"{choice.Kind} was chosen but ILGPU created a {type} accelerator");
        }

        return (accelerator, choice.Kind, choice.Reason);
    }

    private static int FirstOfKind(AcceleratorKind kind, IReadOnlyList<AcceleratorCandidate> candidates)
    {
        for (int i = 0; i < candidates.Count; i++)
        {
            if (candidates[i].Kind == kind)
                return i;
        }

        return -1;
    }
}
