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
/// a second thread's run while one is in progress is refused. Dispose it (or its mirror) to free its memory; disposal
/// waits for a run in progress.
/// </remarks>
public sealed class PreparedBatch : IDisposable
{
    // Held for the whole of a run, and by Dispose: a run never overlaps another or the freeing of the arrays.
    private readonly Lock _gate = new();
    private bool _disposed;

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

    /// <summary>Enters a run; false if another run holds the batch.</summary>
    /// <exception cref="ObjectDisposedException">The batch was disposed.</exception>
    internal bool TryEnterRun()
    {
        if (!_gate.TryEnter())
        {
            return false;
        }

        if (_disposed)
        {
            _gate.Exit();
            throw new ObjectDisposedException(nameof(PreparedBatch));
        }

        return true;
    }

    internal void ExitRun() => _gate.Exit();

    /// <summary>Frees the batch's device-visible memory, after a run in progress has finished.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            Batch.Dispose();
        }
    }
}
