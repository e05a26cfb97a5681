using GpuExclusive.Paging;

namespace GpuExclusive.Tests.Engine;

/// <summary>
/// The software TLB shootdown skips its process-wide barrier (the IPI) only when no other live thread has a slot, as
/// Linux skips CPUs outside the mm's cpumask. (The memory ordering that makes a first claim racing a flush safe — a
/// full fence on each side — is argued in <see cref="TlbShootdown"/>; a race that needs a store-buffer reorder of a
/// few nanoseconds on a thread's one-time claim is not something a bounded test can catch.)
/// </summary>
public sealed class TlbShootdownTests
{
    [Fact]
    public void AnotherThreadMayAccess_WhenEverySlotIsOwnOrADeadThreads_IsFalse()
    {
        var dead = new Thread(() => { });
        dead.Start();
        dead.Join();

        Assert.False(TlbShootdown.AnotherThreadMayAccess([Thread.CurrentThread, dead], own: 0));
        Assert.False(TlbShootdown.AnotherThreadMayAccess([dead, dead], own: -1));
        Assert.False(TlbShootdown.AnotherThreadMayAccess([], own: -1));
    }

    [Fact]
    public void AnotherThreadMayAccess_WithALiveOtherOwnerOrAClaimNotYetOwned_IsTrue()
    {
        using var release = new ManualResetEventSlim();
        var live = new Thread(() => release.Wait());
        live.Start();
        try
        {
            Assert.True(TlbShootdown.AnotherThreadMayAccess([Thread.CurrentThread, live], own: 0));
            // A slot claimed whose owner is not written yet: the claimer may be about to load a PTE.
            Assert.True(TlbShootdown.AnotherThreadMayAccess([Thread.CurrentThread, null], own: 0));
            // Only the flusher's own slot index is skipped.
            Assert.True(TlbShootdown.AnotherThreadMayAccess([Thread.CurrentThread], own: -1));
        }
        finally
        {
            release.Set();
            live.Join();
        }
    }

    [Fact]
    public void Flush_WhileAnotherLiveThreadHoldsASlot_IssuesTheProcessWideBarrier()
    {
        // The other thread has made an access (claimed a slot) and lives on: it may start another at any moment, with
        // plain stores only, so the flush must issue the barrier whatever else runs in the process.
        using var claimed = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var other = new Thread(() =>
        {
            ref var sequence = ref TlbShootdown.Enter();
            TlbShootdown.Exit(ref sequence);
            claimed.Set();
            release.Wait();
        });
        other.Start();
        try
        {
            claimed.Wait();
            Assert.True(TlbShootdown.Flush(), "the flush skipped its barrier while another live thread held a slot");
        }
        finally
        {
            release.Set();
            other.Join();
        }
    }
}
