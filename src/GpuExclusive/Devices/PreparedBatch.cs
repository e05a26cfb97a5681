using GpuExclusive.Devices;

namespace GpuExclusive;

/// <summary>
/// A batch of device atomics validated and translated once for one <see cref="DeviceMirror"/> and kept in
/// device-visible memory (<see cref="DeviceMirror.Prepare"/>), so that <see cref="DeviceMirror.Run(PreparedBatch, Span{long})"/>
/// runs it again and again without copying or translating its ops: an iterative workload's steady state.
/// </summary>
/// <remarks>
/// Every run has the semantics of <see cref="DeviceMirror.Run(ReadOnlySpan{AtomicOp}, Span{long})"/> on the same ops:
/// device faults are granted, revoked pages are replayed, each op is applied exactly once per run. One run at a time:
/// a run while another is in progress — on another thread, or from a notifier callback inside the run — is refused.
/// Batches of up to <see cref="EngineSettings.ResidentBatchOps"/> ops go to the resident kernel, which still copies
/// them into its staging arrays on every run (a small copy; the translation is still saved). Only
/// <see cref="Dispose"/> frees the batch's memory: disposing its mirror or device makes it unusable but does not free it.
/// </remarks>
public sealed class PreparedBatch : IDisposable
{
    private const int Idle = 0;
    private const int Running = 1;
    private const int Disposed = 2;

    // Idle → Running → Idle per run, Idle → Disposed once. A state word rather than a lock: a lock would let the
    // running thread re-enter (a notifier callback inside the run calling Run or Dispose) and free or reset the batch
    // under its own run. Dispose parks on _gate until a run on another thread ends.
    private readonly object _gate = new();
    private int _state;
    private int _runningThread;

    internal PreparedBatch(DeviceMirror mirror, DeviceBatch batch, ulong[] pages, int[] slots)
    {
        Mirror = mirror;
        Batch = batch;
        Pages = pages;
        Slots = slots;
    }

    /// <summary>Ops in the batch.</summary>
    public int Count => Batch.Capacity;

    /// <summary>The mirror the batch was prepared for; it runs only there.</summary>
    public DeviceMirror Mirror { get; }

    internal DeviceBatch Batch { get; }

    /// <summary>The distinct pages the ops touch, and the slot of each one's device PTE (same order).</summary>
    internal ulong[] Pages { get; }

    internal int[] Slots { get; }

    /// <summary>True while a run holds the batch (for tests).</summary>
    internal bool IsRunning => Volatile.Read(ref _state) == Running;

    /// <summary>Enters a run; false if a run holds the batch already.</summary>
    /// <exception cref="ObjectDisposedException">The batch was disposed (or is being disposed).</exception>
    internal bool TryEnterRun()
    {
        var seen = Interlocked.CompareExchange(ref _state, Running, Idle);
        if (seen == Disposed)
        {
            throw new ObjectDisposedException(nameof(PreparedBatch));
        }

        if (seen == Running)
        {
            return false;
        }

        Volatile.Write(ref _runningThread, Environment.CurrentManagedThreadId);
        return true;
    }

    internal void ExitRun()
    {
        Volatile.Write(ref _runningThread, 0);
        Volatile.Write(ref _state, Idle);
        lock (_gate)
        {
            Monitor.PulseAll(_gate); // a Dispose waiting for this run
        }
    }

    /// <summary>Frees the batch's device-visible memory, after a run in progress on another thread has finished.</summary>
    /// <exception cref="InvalidOperationException">Called from inside a run of this batch (a notifier callback).</exception>
    public void Dispose()
    {
        lock (_gate)
        {
            while (true)
            {
                var seen = Interlocked.CompareExchange(ref _state, Disposed, Idle);
                if (seen == Idle)
                {
                    break;
                }

                if (seen == Disposed)
                {
                    return;
                }

                if (Volatile.Read(ref _runningThread) == Environment.CurrentManagedThreadId)
                {
                    throw new InvalidOperationException("a prepared batch cannot be disposed from inside its own run (a notifier callback); dispose it after Run returns");
                }

                // The run ends with ExitRun, which pulses under this gate: it cannot slip in between the check and the wait.
                Monitor.Wait(_gate);
            }
        }

        Mirror.Device.Retire(Batch); // a failed device's stuck kernel may still use it
    }
}
