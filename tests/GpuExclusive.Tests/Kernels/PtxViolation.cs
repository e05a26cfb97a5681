namespace GpuExclusive.Tests.Kernels;

/// <summary>The rules <see cref="HostSharedMemoryRules"/> checks; a test asserting a violation names the rule it expects.</summary>
internal enum PtxRule
{
    /// <summary>A generic or global access whose address derives from no kernel parameter: it cannot be classified.</summary>
    UnclassifiedAddress,

    /// <summary>An access to host-shared memory that is weak, volatile or not at system scope.</summary>
    NotStrongAtSystemScope,

    /// <summary>A fence other than <c>fence.sc.sys</c> or <c>membar.sys</c>.</summary>
    FenceNotSystemWide,

    /// <summary>A hazard word written without a system-scope release (<c>st.release.sys</c>, or an atomic with <c>.release</c>/<c>.acq_rel</c> and <c>.sys</c>).</summary>
    HazardWriteNotRelease,

    /// <summary>A path from a hazard write to a page-table read with no <c>fence.sc.sys</c> between (the Dekker pair).</summary>
    HazardToTableUnfenced,

    /// <summary>A fault-ring record written without a system-scope release (<c>st.release.sys</c>): it must publish the awaited-op word.</summary>
    FaultRecordNotRelease,

    /// <summary>A page-table access other than <c>ld.acquire.sys</c>.</summary>
    TableReadNotAcquire,

    /// <summary>A compare-exchange on the control block other than <c>atom.acq_rel.sys.cas</c>.</summary>
    DoorbellNotAcqRel,

    /// <summary>A release of a control word reached, on some path, by a barrier or access after the last full fence.</summary>
    ControlReleaseUnfenced,

    /// <summary>In the resident kernel, a read of the batch reached from a barrier with no full fence after it.</summary>
    BatchReadUnfenced,

    /// <summary>Something the checks rely on is absent, so they would pass vacuously.</summary>
    MissingAccess,
}

/// <summary>One broken rule, where (a PTX line; 0 for the kernel as a whole) and why.</summary>
internal sealed record PtxViolation(PtxRule Rule, int Line, string Instruction, string Detail)
{
    /// <inheritdoc/>
    public override string ToString() =>
        Line > 0 ? $"line {Line}: {Instruction}  <- {Rule}: {Detail}" : $"{Rule}: {Detail}";
}
