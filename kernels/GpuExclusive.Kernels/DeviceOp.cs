using System.Runtime.InteropServices;

namespace GpuExclusive.Kernels;

/// <summary>
/// One atomic as the kernel sees it: the page is named by its slot in the mirror's device page table, so the kernel
/// never sees virtual addresses. 32 bytes, blittable.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DeviceOp
{
    /// <summary>Index of the page's entry in the device page table.</summary>
    public int Slot;
    /// <summary>Byte offset within the page (aligned to the operand size).</summary>
    public int Offset;
    /// <summary>An <c>OpCode</c> value.</summary>
    public int Code;
    /// <summary>1 for a 64-bit operand, 0 for 32-bit.</summary>
    public int Is64Bit;
    /// <summary>The operand.</summary>
    public long Operand;
    /// <summary>The comparand of a compare-exchange.</summary>
    public long Comparand;
}

/// <summary>Op codes; the same order as the public <c>AtomicKind</c>.</summary>
internal static class OpCode
{
    /// <summary>Add.</summary>
    public const int Add = 0;
    /// <summary>Exchange.</summary>
    public const int Exchange = 1;
    /// <summary>CompareExchange.</summary>
    public const int CompareExchange = 2;
    /// <summary>Min (signed).</summary>
    public const int Min = 3;
    /// <summary>Max (signed).</summary>
    public const int Max = 4;
    /// <summary>And.</summary>
    public const int And = 5;
    /// <summary>Or.</summary>
    public const int Or = 6;
    /// <summary>Xor.</summary>
    public const int Xor = 7;
}

/// <summary>Per-op state words: each op is applied once, and its state says so before a relaunch looks again.</summary>
internal static class OpState
{
    /// <summary>Not applied yet.</summary>
    public const int Pending = 0;
    /// <summary>Applied; its old value is stored.</summary>
    public const int Done = 1;
    /// <summary>Refused: nothing maps the address.</summary>
    public const int NotMapped = 2;
    /// <summary>Refused: the mapping forbids it.</summary>
    public const int PermissionDenied = 3;
}

/// <summary>Slots of the control block, an int array in memory both host and kernel see.</summary>
internal static class ControlBlock
{
    /// <summary>
    /// The stop word, polled every <see cref="AtomicBatchKernel.StopPollOps"/> ops: <see cref="StopRequested"/> asks the
    /// running kernel to return at its next poll; <see cref="StallForTest"/> makes it spin at that poll until the bit is
    /// cleared (a test hook for a device that stops answering).
    /// <code>
    ///  31                                              2     1          0
    /// +-------------------------------------------------+-----------+---------------+
    /// |                    reserved (0)                 | StallFor- | StopRequested |
    /// |                                                 |   Test    |               |
    /// +-------------------------------------------------+-----------+---------------+
    /// </code>
    /// The host changes one bit at a time with an interlocked and/or, so raising a stop never clears a stall.
    /// </summary>
    public const int Stop = 0;
    /// <summary>Bit of <see cref="Stop"/>: return at the next poll.</summary>
    public const int StopRequested = 1;
    /// <summary>Bit of <see cref="Stop"/>: spin at the next poll until cleared (tests only), then honour <see cref="StopRequested"/>.</summary>
    public const int StallForTest = 2;
    /// <summary>
    /// Entries the kernels appended to the fault ring (each an op index + 1, at <c>count &amp; (length - 1)</c>); the host
    /// takes them while the launch runs. More than a ring's length ahead of the host means some were lost: then the
    /// host scans the batch after the launch.
    /// </summary>
    public const int FaultCount = 1;
    /// <summary>The resident kernel serves a batch each time the host stores a new number here.</summary>
    public const int Doorbell = 2;
    /// <summary>Ops in the batch the doorbell announced.</summary>
    public const int Count = 3;
    /// <summary>The doorbell number of the last batch the resident kernel finished.</summary>
    public const int Finished = 4;
    /// <summary>Empty doorbell polls after which the resident kernel closes the doorbell and returns; 0: never.</summary>
    public const int IdlePolls = 5;
    /// <summary>Non-zero once a kernel thread left an op pending (it stopped waiting for a grant): the host scans the batch after the launch.</summary>
    public const int LeftPending = 6;
    /// <summary>The doorbell value of a resident kernel that closed it: the host must launch a new one to ring.</summary>
    public const int Closed = -1;
    /// <summary>Words in the block.</summary>
    public const int Length = 8;
}
