namespace GpuExclusive.Workloads;

/// <summary>
/// Device throughput under a CPU reader: a batch of <see cref="Ops"/> adds of 1 (2 M by default) over <see cref="Pages"/> pages
/// (round-robin), run undisturbed, or while a CPU thread reads the batch's first page in a tight loop for the whole
/// run — every read that finds the page device-held revokes it, and the batch faults it back. DESIGN target: the batch
/// at most 2× slower with the reader.
/// </summary>
/// <remarks>
/// The reader is a thread of the workload's own, parked between runs; <see cref="RunWithReader"/> starts it, waits
/// for its first read (so it covers the whole run), runs the batch, and parks it again.
/// </remarks>
internal sealed class ReaderThroughputWorkload : IDisposable
{
    internal const int DefaultOps = 2 << 20;

    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private readonly DeviceMirror _mirror;
    private readonly PreparedBatch _batch;
    private readonly ulong _readPage;
    private readonly Thread _reader;
    private readonly ManualResetEventSlim _go = new(false);
    private readonly ManualResetEventSlim _parked = new(false);
    private volatile bool _reading;
    private volatile bool _readerStarted;
    private volatile bool _disposed;
    private long _lastReads;
    private Exception? _readerFailure;

    /// <param name="device">The device (the caller's: it outlives the workload).</param>
    /// <param name="pages">Pages the batch spreads its adds over; the reader reads the first.</param>
    /// <param name="ops">Adds per batch.</param>
    internal ReaderThroughputWorkload(ExclusiveDevice device, int pages, int ops = DefaultOps)
    {
        Pages = pages;
        Ops = ops;
        _pool = new PagePool(pages + 64);
        _space = new AddressSpace(_pool);
        var region = _space.Map((ulong)pages * PagePool.PageSize, Protection.ReadWrite);
        for (var page = 0; page < pages; page++)
        {
            _space.Write(region + ((ulong)page * PagePool.PageSize), 0);
        }

        _readPage = region;
        _mirror = device.Mirror(_space);
        _batch = _mirror.Prepare(Batches.AddsOverPages(region, pages, ops));
        _reader = new Thread(ReadLoop) { IsBackground = true, Name = "bench CPU reader" };
        _reader.Start();
    }

    internal int Pages { get; }

    internal int Ops { get; }

    /// <summary>Batches run with the reader since <see cref="ResetCounts"/>.</summary>
    internal long ReaderBatches { get; private set; }

    /// <summary>The reader's reads over those batches.</summary>
    internal long ReaderReads { get; private set; }

    /// <summary>Device faults of those batches (each a page the reader had taken, or a replayed op).</summary>
    internal long ReaderDeviceFaults { get; private set; }

    /// <summary>Launches after the first of those batches.</summary>
    internal long ReaderReplays { get; private set; }

    internal void ResetCounts() => (ReaderBatches, ReaderReads, ReaderDeviceFaults, ReaderReplays) = (0, 0, 0, 0);

    internal BatchResult RunUndisturbed() => Batches.RequireCompleted(_mirror.Run(_batch), Ops, "undisturbed batch");

    /// <exception cref="InvalidOperationException">The batch left ops undone, or the reader failed.</exception>
    internal BatchResult RunWithReader()
    {
        _parked.Reset();
        _readerStarted = false;
        _reading = true;
        _go.Set();
        var spin = default(SpinWait);
        while (!_readerStarted && Volatile.Read(ref _readerFailure) is null)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }

        BatchResult result;
        try
        {
            result = _mirror.Run(_batch);
        }
        finally
        {
            _reading = false;
            _parked.Wait();
        }

        if (Volatile.Read(ref _readerFailure) is { } failure)
        {
            throw new InvalidOperationException($"the CPU reader failed: {failure.Message}", failure);
        }

        Batches.RequireCompleted(result, Ops, "batch with a CPU reader");
        ReaderBatches++;
        ReaderReads += Volatile.Read(ref _lastReads);
        ReaderDeviceFaults += result.DeviceFaults;
        ReaderReplays += result.Replays;
        return result;
    }

    private void ReadLoop()
    {
        var space = _space;
        var page = _readPage;
        while (true)
        {
            _go.Wait();
            _go.Reset();
            if (_disposed)
            {
                return;
            }

            long reads = 0;
            try
            {
                _ = space.Read<int>(page);
                reads++;
                _readerStarted = true;
                while (_reading)
                {
                    _ = space.Read<int>(page);
                    reads++;
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref _readerFailure, e);
                _readerStarted = true;
            }

            Volatile.Write(ref _lastReads, reads);
            _parked.Set();
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _go.Set();
        _reader.Join();
        _batch.Dispose();
        _mirror.Dispose();
        _space.Dispose();
        _pool.Dispose();
        _go.Dispose();
        _parked.Dispose();
    }
}
