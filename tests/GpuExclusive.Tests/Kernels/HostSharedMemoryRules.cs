namespace GpuExclusive.Tests.Kernels;

/// <summary>
/// What a kernel's parameters are to the memory rules: <paramref name="Shared"/> the host reads or writes while the
/// kernel runs (each must be accessed, or the rules on it are vacuous), <paramref name="DataPages"/> where GPU-scope
/// data atomics are the design (each must see one), and whether it is the <paramref name="Resident"/> kernel, which
/// must have a doorbell compare-exchange and a Finished release, and re-reads its batch each round.
/// </summary>
internal sealed record HostSharedContract(IReadOnlyList<string> Shared, IReadOnlyList<string> DataPages, bool Resident);

/// <summary>
/// The rules for memory shared with the host (docs/architecture.md; <c>HostSharedMemory.cs</c> and the hazard
/// protocol in <c>AtomicBatchKernel.cs</c>), checked on a kernel's PTX with <see cref="PtxProgram"/>. Host-mapped
/// memory is not coherent at GPU scope over PCIe, so every access to a shared word must be strong at system scope; the
/// hazard protocol adds a release per hazard write and the Dekker fence before each page-table read.
/// </summary>
internal static class HostSharedMemoryRules
{
    /// <summary>The hazard-word parameter.</summary>
    public const string Hazards = "hazards";

    /// <summary>The device page table parameter.</summary>
    public const string Table = "table";

    /// <summary>The fault ring parameter.</summary>
    public const string Faults = "faults";

    /// <summary>The control block parameter.</summary>
    public const string Control = "control";

    /// <summary>The batch's ops: written by the host before a launch, or between a resident kernel's rounds.</summary>
    public const string Ops = "ops";

    /// <summary>Every violation in reachable code, in line order; empty when the kernel keeps the rules.</summary>
    public static IReadOnlyList<PtxViolation> Check(PtxProgram program, HostSharedContract contract)
    {
        var violations = new List<PtxViolation>();
        void Report(PtxRule rule, PtxInstruction at, string detail) => violations.Add(new(rule, at.Line, at.Text, detail));

        var accesses = program.Reachable.Where(i => i.IsHostVisible).Select(i => (At: i, From: program.AddressParameters(i))).ToList();
        var sharedFrom = accesses.ToDictionary(a => a.At.Index, a => a.From.Where(contract.Shared.Contains).Order(StringComparer.Ordinal).ToList());
        bool Through(PtxInstruction i, string parameter) => sharedFrom.TryGetValue(i.Index, out var from) && from.Contains(parameter);

        foreach (var (at, from) in accesses)
        {
            if (from.Count == 0)
            {
                Report(PtxRule.UnclassifiedAddress, at, "the address derives from no kernel parameter, so nothing says whether the host shares it");
                continue;
            }

            var shared = sharedFrom[at.Index];
            if (shared.Count > 0 && Weakness(at) is { } weakness)
            {
                Report(PtxRule.NotStrongAtSystemScope, at, $"through {string.Join(", ", shared)}: {weakness}");
            }

            if (Through(at, Hazards) && at.Writes && !(at.Is("sys") && (at.Is("release") || at.Is("acq_rel"))))
            {
                Report(PtxRule.HazardWriteNotRelease, at, "a hazard change must release, at system scope, the atomics applied under the old word (st.release.sys)");
            }

            // A fault record tells the host which op a thread awaits; the host then reads the thread's awaited-op word
            // (stored before the record) to know whether the grant was used: the record releases that store.
            if (Through(at, Faults) && at.Writes && !(at.Is("sys") && (at.Is("release") || at.Is("acq_rel"))))
            {
                Report(PtxRule.FaultRecordNotRelease, at, "a fault record must release, at system scope, the awaited-op word stored before it (st.release.sys)");
            }

            // The one write a kernel makes to a device PTE, marking a faulted page wanted, is an acquire-release or.
            var tableRead = at.Op == "ld" && at.Is("acquire") && at.Is("sys");
            var wantedMark = at.Op == "atom" && at.Is("or") && at.Is("acq_rel") && at.Is("sys");
            if (Through(at, Table) && !(tableRead || wantedMark))
            {
                Report(PtxRule.TableReadNotAcquire, at, "a device PTE is read with ld.acquire.sys (or marked wanted with atom.acq_rel.sys.or), the acquire that makes the host's page contents visible");
            }

            if (Through(at, Control) && at.Op == "atom" && at.Is("cas") && !(at.Is("acq_rel") && at.Is("sys")))
            {
                Report(PtxRule.DoorbellNotAcqRel, at, "the doorbell compare-exchange is atom.acq_rel.sys.cas");
            }
        }

        foreach (var fence in program.Reachable.Where(i => i.Op is "fence" or "membar" && !IsSystemFence(i)))
        {
            Report(PtxRule.FenceNotSystemWide, fence, "host-shared memory is ordered only by fence.sc.sys or membar.sys");
        }

        // The Dekker pair: between a hazard write and any later page-table read, on every path, a full system fence.
        var hazardOpen = program.OpenBefore(i => i.IsHostVisible && i.Writes && Through(i, Hazards), ClosesOrdering);
        foreach (var (at, _) in accesses.Where(a => a.At.Reads && Through(a.At, Table) && hazardOpen[a.At.Index].Count > 0))
        {
            Report(PtxRule.HazardToTableUnfenced, at, $"a path from the hazard write at {Lines(hazardOpen[at.Index])} reaches this page-table read without fence.sc.sys");
        }

        // Finished: the first thread's release must follow a full fence after the barrier that orders the group's
        // results, with nothing in between on any path.
        var unfenced = program.OpenBefore(i => i.Op is "bar" or "barrier" || i.IsHostVisible, ClosesOrdering);
        foreach (var (at, _) in accesses.Where(a => a.At.Op == "st" && a.At.Is("release") && Through(a.At, Control) && unfenced[a.At.Index].Count > 0))
        {
            Report(PtxRule.ControlReleaseUnfenced, at, $"a path reaches this release from the barrier or access at {Lines(unfenced[at.Index])} with no fence.sc.sys after it");
        }

        // The resident kernel re-reads the same host-mapped ops every round with plain loads, and only the first thread
        // acquired the doorbell: ServeBatches gives every thread its own fence.sc.sys after the barrier ("acquire for
        // every thread") rather than lean on the barrier's CTA-scope ordering alone. This keeps that fence there.
        var sinceBarrier = program.OpenBefore(i => i.Op is "bar" or "barrier", ClosesOrdering);
        foreach (var (at, _) in accesses.Where(a => contract.Resident && a.At.Reads && a.From.Contains(Ops) && sinceBarrier[a.At.Index].Count > 0))
        {
            Report(PtxRule.BatchReadUnfenced, at, $"a path reaches this read of the batch from the barrier at {Lines(sinceBarrier[at.Index])} with no fence.sc.sys after it");
        }

        foreach (var parameter in contract.Shared.Where(p => !accesses.Any(a => Through(a.At, p))))
        {
            violations.Add(new(PtxRule.MissingAccess, 0, "", $"{parameter} is never accessed: the rules on it are vacuous"));
        }

        foreach (var page in contract.DataPages.Where(p => !accesses.Any(a => a.At.Op is "atom" or "red" && a.From.Contains(p))))
        {
            violations.Add(new(PtxRule.MissingAccess, 0, "", $"no data atomic through {page}"));
        }

        if (contract.Resident && !accesses.Any(a => a.At.Op == "atom" && a.At.Is("cas") && Through(a.At, Control)))
        {
            violations.Add(new(PtxRule.MissingAccess, 0, "", "no doorbell compare-exchange through control"));
        }

        if (contract.Resident && !accesses.Any(a => a.At.Op == "st" && a.At.Is("release") && Through(a.At, Control)))
        {
            violations.Add(new(PtxRule.MissingAccess, 0, "", "no Finished release through control"));
        }

        return violations.OrderBy(v => v.Line).ToList();

        string Lines(IReadOnlySet<int> instructions)
        {
            var lines = instructions.Select(i => program.Instructions[i].Line).Order().ToList();
            return "line " + string.Join(", ", lines.Take(4)) + (lines.Count > 4 ? $" and {lines.Count - 4} more" : "");
        }
    }

    /// <summary>What makes an access not strong at system scope; null when it is.</summary>
    private static string? Weakness(PtxInstruction access)
    {
        var problems = new List<string>();
        if (access.Op is "ld" or "st" && !(access.Is("relaxed") || access.Is(access.Op == "ld" ? "acquire" : "release")))
        {
            problems.Add(access.Is("volatile") ? "volatile, not relaxed/acquire/release" : "weak (no .relaxed/.acquire/.release)");
        }

        if (access.Op == "ldu")
        {
            problems.Add("ldu reads through a read-only cache");
        }

        if (!access.Is("sys"))
        {
            var scope = new[] { "cta", "cluster", "gpu" }.FirstOrDefault(access.Is) ?? (access.Op is "atom" or "red" ? "gpu (the default)" : null);
            problems.Add(scope is null ? "no scope, not .sys" : $"scope .{scope}, not .sys");
        }

        return problems.Count == 0 ? null : string.Join("; ", problems);
    }

    private static bool IsSystemFence(PtxInstruction i) => i.Opcode is "fence.sc.sys" or "membar.sys";

    /// <summary>A fence that surely runs: a guarded one may be skipped.</summary>
    private static bool ClosesOrdering(PtxInstruction i) => IsSystemFence(i) && i.Guard is null;
}
