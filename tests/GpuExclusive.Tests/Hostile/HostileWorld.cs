using System.Security.Cryptography;
using GpuExclusive.Diagnostics;
using GpuExclusive.Tests.Engine;
using GpuExclusive.Paging;

namespace GpuExclusive.Tests.Hostile;

/// <summary>
/// The state every hostile call is aimed at, built fresh for each case: a pool, a parent space with one area of each
/// kind, a hole between mappings, a forked child, a device mirror holding two pages exclusively, an interval notifier,
/// and already-disposed objects of each type. <see cref="Snapshot"/> describes all of it without changing any of it.
/// </summary>
/// <remarks>
/// Layout of the parent (Map places areas one unmapped page apart, in this order):
/// <code>
///  Rw        4 pages  private RW, written; the first page rewritten after the fork (private and writable),
///                     the other three copy-on-write shared with the child
///  RoHead    1 page   private RW, written   } one mapping split by Protect: a span can run from a
///  Ro        2 pages  private R,  written   } writable page into read-only ones
///  NoAccess  1 page   private, Protection.None, written
///  GapLow    1 page   private RW, written   } one mapping whose middle page was unmapped:
///  Hole      1 page   unmapped              } a hole between two mappings, and a range used after Unmap
///  GapHigh   1 page   private RW, written   }
///  Shared    2 pages  shared RW, written
///  Locked    2 pages  private RW, mlocked, written
///  Excl      2 pages  private RW, written, then device-exclusive to <see cref="Mirror"/> (after the fork)
///  Big     128 pages  private RW, never touched: more than the pool's free frames
/// </code>
/// </remarks>
internal sealed unsafe class HostileWorld : IDisposable
{
    public const ulong Page = PagePool.PageSize;
    public const long PoolPages = 64;
    public const int BigPages = 128;

    /// <summary>One past the last user address (the 47-bit space).</summary>
    public const ulong SpaceEnd = PageTable.AddressLimit;

    private readonly AddressSpace _mirroredThenDisposed;
    private readonly AddressSpace _spaceOfDisposedMirror;
    private readonly IDisposable _intervalRegistration;
    private readonly IDisposable _notifierRegistration;
    private readonly ulong _first;
    private readonly ulong _last;

    public HostileWorld(HostileSweepFixture fixture)
    {
        Fixture = fixture;
        var device = fixture.Device;
        Pool = new PagePool(PoolPages);
        Space = new AddressSpace(Pool);

        Rw = Space.Map(4 * Page, Protection.ReadWrite);
        Fill(Space, Rw, 4, 0x11);
        RoHead = Space.Map(3 * Page, Protection.ReadWrite);
        Fill(Space, RoHead, 3, 0x22);
        Ro = RoHead + Page;
        Space.Protect(Ro, 2 * Page, Protection.Read);
        NoAccess = Space.Map(Page, Protection.ReadWrite);
        Fill(Space, NoAccess, 1, 0x33);
        Space.Protect(NoAccess, Page, Protection.None);
        GapLow = Space.Map(3 * Page, Protection.ReadWrite);
        Fill(Space, GapLow, 3, 0x44);
        Hole = GapLow + Page;
        GapHigh = GapLow + (2 * Page);
        Space.Unmap(Hole, Page);
        Shared = Space.Map(2 * Page, Protection.ReadWrite, Sharing.Shared);
        Fill(Space, Shared, 2, 0x55);
        Locked = Space.Map(2 * Page, Protection.ReadWrite);
        Space.Lock(Locked, 2 * Page);
        Fill(Space, Locked, 2, 0x66);
        Excl = Space.Map(2 * Page, Protection.ReadWrite);
        Fill(Space, Excl, 2, 0x77);
        Big = Space.Map(BigPages * Page, Protection.ReadWrite);

        Child = Space.Fork();
        Fill(Space, Rw, 1, 0x18); // a copy-on-write break: the parent's first Rw page is private and writable again
        Mirror = device.Mirror(Space);
        if (Mirror.MakeExclusive(Excl, 2 * Page) != 2)
        {
            throw new InvalidOperationException("the fixture's grant did not take both pages");
        }

        Interval = new RecordingInterval();
        _intervalRegistration = Space.InsertIntervalNotifier(Interval, Rw, 4 * Page);
        Notifier = new NullNotifier();
        _notifierRegistration = Space.RegisterNotifier(Notifier);

        _first = Rw;
        _last = Big + (BigPages * Page);

        // Disposed objects of each kind, over the same pool.
        DisposedSpace = new AddressSpace(Pool);
        DisposedSpaceAddress = DisposedSpace.Map(Page, Protection.ReadWrite);
        DisposedSpace.Write(DisposedSpaceAddress, 1);
        DisposedSpace.Dispose();

        _spaceOfDisposedMirror = new AddressSpace(Pool);
        DisposedMirrorAddress = _spaceOfDisposedMirror.Map(Page, Protection.ReadWrite);
        DisposedMirror = device.Mirror(_spaceOfDisposedMirror);
        DisposedMirror.Dispose();

        _mirroredThenDisposed = new AddressSpace(Pool);
        OrphanMirrorAddress = _mirroredThenDisposed.Map(Page, Protection.ReadWrite);
        OrphanMirror = device.Mirror(_mirroredThenDisposed);
        OrphanMirror.MakeExclusive(OrphanMirrorAddress, Page);
        _mirroredThenDisposed.Dispose();

        DisposedPool = new PagePool(1);
        DisposedPool.Dispose();

        Invariants.Check(Pool);
    }

    public HostileSweepFixture Fixture { get; }

    public PagePool Pool { get; }

    public AddressSpace Space { get; }

    public AddressSpace Child { get; }

    public DeviceMirror Mirror { get; }

    public RecordingInterval Interval { get; }

    public MmuNotifier Notifier { get; }

    public ulong Rw { get; }

    public ulong RoHead { get; }

    public ulong Ro { get; }

    public ulong NoAccess { get; }

    public ulong GapLow { get; }

    public ulong Hole { get; }

    public ulong GapHigh { get; }

    public ulong Shared { get; }

    public ulong Locked { get; }

    public ulong Excl { get; }

    public ulong Big { get; }

    /// <summary>A space of <see cref="Pool"/> disposed after mapping <see cref="DisposedSpaceAddress"/>.</summary>
    public AddressSpace DisposedSpace { get; }

    public ulong DisposedSpaceAddress { get; }

    /// <summary>A mirror disposed while its space lives on.</summary>
    public DeviceMirror DisposedMirror { get; }

    public ulong DisposedMirrorAddress { get; }

    /// <summary>A mirror (not disposed) whose space was disposed under it.</summary>
    public DeviceMirror OrphanMirror { get; }

    public ulong OrphanMirrorAddress { get; }

    /// <summary>A pool disposed right after creation.</summary>
    public PagePool DisposedPool { get; }

    /// <summary>
    /// Everything a call could have changed, one line per fact: free frames, the device's exclusive pages, the interval
    /// notifier's range, and for the parent and the child every area and every page from the first area to one past the
    /// last (<see cref="AddressSpace.Inspect"/> plus a hash of the frame's bytes, read straight from the pool).
    /// </summary>
    /// <remarks>Nothing here faults a page in, sets an accessed bit or revokes a device-exclusive entry.</remarks>
    public List<string> Snapshot()
    {
        var lines = new List<string>
        {
            $"pool: {Pool.FreePages} of {Pool.Capacity} frames free",
            $"device: {Mirror.CountExclusive(0, SpaceEnd)} page(s) exclusive",
            $"interval notifier: [0x{Interval.Start:x}, 0x{Interval.End:x}), {Interval.Invalidations} invalidation(s)",
        };
        foreach (var (name, space) in new[] { ("parent", Space), ("child", Child) })
        {
            lines.AddRange(space.DescribeAreas().Select(area => $"{name} area {area}"));
            for (var page = _first; page <= _last; page += Page)
            {
                var info = space.Inspect(page);
                var data = info.Frame < 0 ? string.Empty : $" data {FrameHash(info.Frame)}";
                lines.Add($"{name} 0x{page:x}: {info}{data}");
            }
        }

        return lines;
    }

    /// <summary>Fails, naming the first differing line, unless <paramref name="after"/> equals <paramref name="before"/>.</summary>
    public static void AssertUnchanged(List<string> before, List<string> after, string what)
    {
        var changed = before.Zip(after).Where(p => p.First != p.Second).Select(p => $"  was: {p.First}\n  now: {p.Second}").ToList();
        if (before.Count != after.Count)
        {
            changed.Add($"  {before.Count} facts before, {after.Count} after:\n  " +
                string.Join("\n  ", after.Except(before).Concat(before.Except(after).Select(l => "(gone) " + l))));
        }

        Assert.True(changed.Count == 0, $"{what} changed the state:\n{string.Join("\n", changed.Take(8))}");
    }

    /// <summary>After a refused call the space, the mirror and the pool still do their ordinary work.</summary>
    public void AssertStillWorks()
    {
        var fresh = Space.Map(Page, Protection.ReadWrite);
        Space.Write(fresh, 0x5EED);
        Assert.Equal(0x5EED, Space.Read<int>(fresh));
        Assert.Equal(1, Mirror.MakeExclusive(fresh, Page));
        Assert.Equal(0x5EEE, Space.AtomicAdd(fresh, 1)); // revokes the grant
        Space.Unmap(fresh, Page);
        Invariants.Check(Pool);
    }

    public void Dispose()
    {
        _intervalRegistration.Dispose();
        _notifierRegistration.Dispose();
        OrphanMirror.Dispose();
        Mirror.Dispose();
        _spaceOfDisposedMirror.Dispose();
        Child.Dispose();
        Space.Dispose();
        Invariants.Check(Pool);
        Assert.Equal(Pool.Capacity, Pool.FreePages); // invariant 5 of docs/architecture.md
        Pool.Dispose();
    }

    private static void Fill(AddressSpace space, ulong address, int pages, byte value)
    {
        var bytes = new byte[pages * PagePool.PageSize];
        for (var i = 0; i < bytes.Length; i++)
        {
            bytes[i] = (byte)(value + (i / PagePool.PageSize)); // every page of an area distinct
        }

        space.Write(address, bytes);
    }

    private string FrameHash(long frame) =>
        Convert.ToHexString(SHA256.HashData(new ReadOnlySpan<byte>(Pool.FrameAddress(frame), PagePool.PageSize)))[..16];

    /// <summary>An interval notifier that counts the invalidations it is asked to act on.</summary>
    internal sealed class RecordingInterval : MmuIntervalNotifier
    {
        private int _invalidations;

        public int Invalidations => Volatile.Read(ref _invalidations);

        protected override void Invalidate(in NotifierRange range) => Interlocked.Increment(ref _invalidations);
    }

    internal sealed class NullNotifier : MmuNotifier;
}

/// <summary>The devices the sweep uses: one CPU-accelerator device for every world, and one opened and disposed.</summary>
public sealed class HostileSweepFixture : IDisposable
{
    private readonly Lazy<ExclusiveDevice> _device = new(() => ExclusiveDevice.Open(AcceleratorKind.Cpu));
    private readonly Lazy<ExclusiveDevice> _disposedDevice = new(() =>
    {
        var device = ExclusiveDevice.Open(AcceleratorKind.Cpu);
        device.Dispose();
        return device;
    });

    /// <summary>The device every world's mirrors belong to (opening one costs about a second).</summary>
    public ExclusiveDevice Device => _device.Value;

    /// <summary>A device already disposed, opened only by the cases that need it.</summary>
    public ExclusiveDevice DisposedDevice => _disposedDevice.Value;

    public void Dispose()
    {
        if (_device.IsValueCreated)
        {
            _device.Value.Dispose();
        }
    }
}
