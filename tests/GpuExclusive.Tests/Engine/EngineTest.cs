using GpuExclusive.Diagnostics;

namespace GpuExclusive.Tests.Engine;

/// <summary>
/// Base of every engine contract class: owns the pools and address spaces a test creates, and on teardown
/// checks the invariants (docs/architecture.md) — #2 (map counts exact, RefCount ≥ MapCount) while spaces are live,
/// and #5 (every frame back in the pool) once they are all disposed.
/// </summary>
public abstract class EngineTest : IDisposable
{
    /// <summary>Bytes in a page, as an address offset.</summary>
    protected const ulong Page = PagePool.PageSize;

    private readonly List<PagePool> _pools = [];
    private readonly List<AddressSpace> _spaces = [];
    private bool _disposed;

    /// <summary>Creates the default pool (<paramref name="capacityPages"/> frames) every test starts with.</summary>
    protected EngineTest(long capacityPages = 64) => Pool = CreatePool(capacityPages);

    /// <summary>The pool <see cref="NewSpace"/> uses unless told otherwise.</summary>
    protected PagePool Pool { get; }

    /// <summary>A further pool, disposed (and checked) with the test.</summary>
    protected PagePool CreatePool(long capacityPages)
    {
        var pool = new PagePool(capacityPages);
        _pools.Add(pool);
        return pool;
    }

    /// <summary>A new address space over <paramref name="pool"/> (default: <see cref="Pool"/>), disposed with the test.</summary>
    protected AddressSpace NewSpace(PagePool? pool = null) => Track(new AddressSpace(pool ?? Pool));

    /// <summary>Forks <paramref name="parent"/>; the child is disposed with the test.</summary>
    protected AddressSpace ForkOf(AddressSpace parent) => Track(parent.Fork());

    /// <summary>Makes the test dispose <paramref name="space"/> at teardown.</summary>
    protected AddressSpace Track(AddressSpace space)
    {
        _spaces.Add(space);
        return space;
    }

    /// <summary>Disposes <paramref name="space"/> now; teardown will not touch it again.</summary>
    protected void DisposeSpace(AddressSpace space)
    {
        space.Dispose();
        _spaces.Remove(space);
    }

    /// <summary>Runs the engine's invariant checker over every pool of this test.</summary>
    protected void AssertInvariants()
    {
        foreach (var pool in _pools)
            Invariants.Check(pool);
    }

    /// <summary>Writes <paramref name="pages"/> whole pages at <paramref name="address"/>, every byte <paramref name="value"/>.</summary>
    protected static void Fill(AddressSpace space, ulong address, int pages, byte value)
    {
        var bytes = new byte[pages * PagePool.PageSize];
        Array.Fill(bytes, value);
        space.Write(address, bytes);
    }

    /// <summary>Reads <paramref name="pages"/> whole pages at <paramref name="address"/>.</summary>
    protected static byte[] ReadPages(AddressSpace space, ulong address, int pages = 1)
    {
        var bytes = new byte[pages * PagePool.PageSize];
        space.Read(address, bytes);
        return bytes;
    }

    /// <summary>Asserts every byte of <paramref name="bytes"/> is <paramref name="value"/>, naming the first that is not.</summary>
    protected static void AssertAllBytes(byte value, ReadOnlySpan<byte> bytes)
    {
        var index = bytes.IndexOfAnyExcept(value);
        Assert.True(index < 0, $"byte {index} is 0x{(index < 0 ? 0 : bytes[index]):x2}, expected 0x{value:x2}");
    }

    /// <summary>
    /// Runs <paramref name="action"/> on its own thread and fails the test if it has not finished within
    /// <paramref name="timeoutSeconds"/>: a deadlock in the engine shows up as a failure, not a hung run.
    /// </summary>
    protected static void RunBounded(Action action, int timeoutSeconds = 10)
    {
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try { action(); }
            catch (Exception e) { error = e; }
        }) { IsBackground = true, Name = "bounded test action" };
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(timeoutSeconds)), $"did not finish within {timeoutSeconds} s (deadlock?)");
        if (error is not null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        GC.SuppressFinalize(this);

        AssertInvariants();
        // Dispose newest first: children before parents (the order must not matter; DisposalTests checks that).
        for (var i = _spaces.Count - 1; i >= 0; i--)
            _spaces[i].Dispose();
        _spaces.Clear();

        foreach (var pool in _pools)
        {
            Invariants.Check(pool);
            Assert.Equal(pool.Capacity, pool.FreePages);
            pool.Dispose();
        }
    }
}

/// <summary>The engine's invariant checker, in one place so every contract class calls it the same way.</summary>
internal static class Invariants
{
    public static void Check(PagePool pool) => InvariantChecker.Check(pool);
}
