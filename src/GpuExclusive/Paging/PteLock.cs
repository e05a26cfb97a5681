using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace GpuExclusive.Paging;

/// <summary>
/// A leaf's PTE lock: a spinlock, as Linux's split PTE lock is. It is held for a handful of PTE stores and never
/// across anything that can block, so a waiter spins (yielding, then sleeping, if the holder was preempted) rather
/// than parking. Uncontended it costs one compare-and-swap and one store: <see cref="Lock"/> and monitors look up the
/// thread's id on every enter and exit, which is a thread-local access and costs more than the rest of a revocation step.
/// Not reentrant; DEBUG builds assert that a thread never waits for a lock it holds.
/// </summary>
internal sealed class PteLock
{
    private int _held;
#if DEBUG
    private int _ownerThread;
#endif

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Enter()
    {
        if (Interlocked.CompareExchange(ref _held, 1, 0) != 0)
        {
            EnterContended();
        }

#if DEBUG
        _ownerThread = Environment.CurrentManagedThreadId;
#endif
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Exit()
    {
#if DEBUG
        Debug.Assert(IsHeldByCurrentThread, "a PTE lock released by a thread that does not hold it");
        _ownerThread = 0;
#endif
        Volatile.Write(ref _held, 0);
    }

    /// <summary>Enters the lock for a <c>using</c> block: <c>using (leaf.Lock.EnterScope()) { … }</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Scope EnterScope()
    {
        Enter();
        return new Scope(this);
    }

#if DEBUG
    /// <summary>Whether the calling thread holds the lock (DEBUG builds only: release builds keep no owner).</summary>
    internal bool IsHeldByCurrentThread => Volatile.Read(ref _held) != 0 && _ownerThread == Environment.CurrentManagedThreadId;
#endif

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterContended()
    {
#if DEBUG
        Debug.Assert(!IsHeldByCurrentThread, "a thread waits for a PTE lock it holds: PTE locks are not reentrant");
#endif
        var spinner = new SpinWait();
        do
        {
            spinner.SpinOnce();
        }
        while (Volatile.Read(ref _held) != 0 || Interlocked.CompareExchange(ref _held, 1, 0) != 0);
    }

    /// <summary>The held lock of a <c>using</c> block; disposing it exits the lock.</summary>
    internal readonly ref struct Scope(PteLock owner)
    {
        public void Dispose() => owner.Exit();
    }
}
