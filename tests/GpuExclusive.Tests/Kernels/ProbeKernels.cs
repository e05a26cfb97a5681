using GpuExclusive.Kernels;
using ILGPU;
using ILGPU.Runtime.Cuda;

namespace GpuExclusive.Tests.Kernels;

/// <summary>
/// Small kernels compiled only to PTX, each breaking one rule of <see cref="HostSharedMemoryRules"/> the way a kernel
/// could (several are what the kernels did before they used <see cref="SystemScope"/>), and two keeping them all: a
/// rule that cannot fire proves nothing about the real kernels. Parameter names are the roles the rules know.
/// </summary>
internal static class ProbeKernels
{
    /// <summary>The old stop-flag poll: an atomic or of zero is GPU-scoped (<c>atom.or.b32</c>) and need not see the host's store.</summary>
    public static void PollsWithGpuScopeAtomic(SharedView<int> control)
    {
        while ((Atomic.Or(ref control.View[ControlBlock.Stop], 0) & ControlBlock.StopRequested) == 0)
        {
        }
    }

    /// <summary>A plain read of a shared word: a weak <c>ld</c>.</summary>
    public static void ReadsWithPlainLoad(SharedView<int> control) =>
        default(SystemScope).StoreRelaxed(control, ControlBlock.Finished, control.View[ControlBlock.Count]);

    /// <summary>A device-level fence (<c>membar.gl</c>) orders nothing for the host.</summary>
    public static void FencesAtDeviceLevel(SharedView<int> control)
    {
        var shared = default(SystemScope);
        shared.StoreRelaxed(control, ControlBlock.Count, 1);
        MemoryFence.DeviceLevel();
        shared.StoreRelease(control, ControlBlock.Finished, 1);
    }

    /// <summary>The Dekker pair without its fence: the table read may pass the hazard store.</summary>
    public static void ReadsTableRightAfterHazard(SharedView<int> hazards, SharedView<long> table, SharedView<int> control)
    {
        var shared = default(SystemScope);
        shared.StoreRelease(hazards, 0, 1);
        shared.StoreRelaxed(control, ControlBlock.Count, (int)shared.LoadAcquire(table, 0));
    }

    /// <summary>A relaxed hazard store does not release the atomics applied under the old word.</summary>
    public static void ChangesHazardRelaxed(SharedView<int> hazards, SharedView<long> table, SharedView<int> control)
    {
        var shared = default(SystemScope);
        shared.StoreRelaxed(hazards, 0, 1);
        shared.FenceStoreLoad();
        shared.StoreRelaxed(control, ControlBlock.Count, (int)shared.LoadAcquire(table, 0));
    }

    /// <summary>A relaxed fault record: the host may see it before the awaited-op word stored just before.</summary>
    public static void RecordsFaultRelaxed(SharedView<int> progress, SharedView<int> faults)
    {
        var shared = default(SystemScope);
        shared.StoreRelaxed(progress, 1, 1);
        shared.StoreRelaxed(faults, 0, 1);
    }

    /// <summary>A relaxed entry read: strong, but without the acquire of the host's page contents.</summary>
    public static void ReadsTableRelaxed(SharedView<int> table, SharedView<int> control)
    {
        var shared = default(SystemScope);
        shared.StoreRelaxed(control, ControlBlock.Count, shared.LoadRelaxed(table, 0));
    }

    /// <summary>The old doorbell close: ILGPU's compare-exchange is GPU-scoped and relaxed.</summary>
    public static void ClosesDoorbellAtGpuScope(SharedView<int> control) =>
        default(SystemScope).StoreRelaxed(control, ControlBlock.Count, Atomic.CompareExchange(ref control.View[ControlBlock.Doorbell], 0, ControlBlock.Closed));

    /// <summary>A Finished report after the barrier but without the fence that publishes the group's results.</summary>
    public static void ReportsWithoutFence(SharedView<int> control)
    {
        Group.Barrier();
        default(SystemScope).StoreRelease(control, ControlBlock.Finished, 1);
    }

    /// <summary>A resident round reading its op right after the barrier: only the first thread acquired the doorbell.</summary>
    public static void ReadsBatchRightAfterBarrier(ArrayView<DeviceOp> ops, SharedView<int> control)
    {
        Group.Barrier();
        default(SystemScope).StoreRelaxed(control, ControlBlock.Count, ops[Group.IdxX].Slot);
    }

    /// <summary>Every rule kept: hazard release, Dekker fence, acquire of the entry, released fault record, fenced release of a control word.</summary>
    public static void KeepsTheRules(SharedView<int> hazards, SharedView<long> table, SharedView<int> control, SharedView<int> faults)
    {
        var shared = default(SystemScope);
        shared.StoreRelease(faults, 0, 1);
        shared.StoreRelease(hazards, 0, 1);
        shared.FenceStoreLoad();
        shared.StoreRelaxed(control, ControlBlock.Count, (int)shared.LoadAcquire(table, 0));
        Group.Barrier();
        shared.Fence();
        shared.StoreRelease(control, ControlBlock.Finished, 1);
    }

    /// <summary>
    /// ILGPU keeps the CPU arm of <see cref="CudaAsm.IsSupported"/> behind a constant predicate
    /// (<c>setp.ne.s32 %p1, 1, 1</c>): its weak store is in the PTX but never runs, and only folding tells.
    /// </summary>
    public static void BranchesOnCudaAsmSupport(SharedView<int> control)
    {
        if (CudaAsm.IsSupported)
        {
            default(SystemScope).StoreRelaxed(control, ControlBlock.Count, 1);
        }
        else
        {
            control.View[ControlBlock.Count] = 1;
        }
    }
}
