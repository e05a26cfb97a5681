namespace GpuExclusive.Tests.Model;

/// <summary>
/// An obviously-correct reference model of the engine's observable behaviour (docs/architecture.md; Linux semantics where
/// the architecture is silent): dictionaries of areas, page states and int values, no concurrency, no frames.
/// </summary>
/// <remarks>
/// Values are tracked per int (only the ints the sequence touches); a missing entry reads as zero. Private data lives in
/// the space (deep-copied on fork: copy-on-write is invisible to values), shared data in a <see cref="ModelObject"/>
/// that forks share.
/// </remarks>
internal sealed class ModelObject
{
    private static int _next;

    public int Id { get; } = Interlocked.Increment(ref _next);

    /// <summary>(object page &lt;&lt; 10 | int slot) → value.</summary>
    public Dictionary<long, int> Data { get; } = [];
}

internal sealed class ModelArea
{
    public ulong Start;
    public ulong End;
    public Protection Protection;
    public ModelObject? Object; // null: private
    public long ObjectFirstPage;
    public bool Locked;
    public bool SoftDirty = true; // a new VMA is VM_SOFTDIRTY

    public bool IsPrivate => Object is null;
    public bool IsReadable => (Protection & Protection.Read) != 0;
    public bool IsWritable => (Protection & Protection.Write) != 0;

    public ModelArea Clone() => (ModelArea)MemberwiseClone();

    public long ObjectPageOf(ulong address) => ObjectFirstPage + (long)((address - Start) / ModelSpace.Page);

    public override string ToString() =>
        $"[0x{Start:x}, 0x{End:x}) {Protection} {(IsPrivate ? "Private" : $"Shared#{Object!.Id}")}{(Locked ? " locked" : "")}{(SoftDirty ? " sd" : "")}";
}

internal enum ModelPageKind
{
    NotPresent,
    Present,
    DeviceExclusive,
}

/// <summary>What the model knows about one virtual page of one space.</summary>
internal sealed class ModelPage
{
    public ModelPageKind Kind;

    /// <summary>The device holds an Atomic device PTE (counted by CountExclusive); implies <see cref="ModelPageKind.DeviceExclusive"/>.</summary>
    public bool DeviceAtomic;

    /// <summary>The PTE's own soft-dirty bit.</summary>
    public bool SoftDirty;

    /// <summary>The PTE must not be writable (fork COW, ClearSoftDirty) until the next write.</summary>
    public bool MustBeReadOnly;

    public ModelPage Clone() => (ModelPage)MemberwiseClone();

    public override string ToString() => $"{Kind}{(DeviceAtomic ? " atomic" : "")}{(SoftDirty ? " sd" : "")}{(MustBeReadOnly ? " ro" : "")}";
}

internal sealed class ModelSpace
{
    public const ulong Page = PagePool.PageSize;

    public List<ModelArea> Areas { get; private init; } = [];

    /// <summary>Page address → state; absent = not present.</summary>
    public Dictionary<ulong, ModelPage> Pages { get; private init; } = [];

    /// <summary>Int address → value of private memory; absent = zero.</summary>
    public Dictionary<ulong, int> Private { get; private init; } = [];

    public ModelArea? Find(ulong address) => Areas.FirstOrDefault(a => address >= a.Start && address < a.End);

    public IEnumerable<ModelArea> Overlapping(ulong start, ulong end) => Areas.Where(a => a.Start < end && a.End > start).OrderBy(a => a.Start);

    public bool HasHole(ulong start, ulong end)
    {
        for (var page = start; page < end; page += Page)
        {
            if (Find(page) is null)
            {
                return true;
            }
        }

        return false;
    }

    public void SplitAt(ulong address)
    {
        var area = Areas.FirstOrDefault(a => address > a.Start && address < a.End);
        if (area is null)
        {
            return;
        }

        var upper = area.Clone();
        upper.Start = address;
        upper.ObjectFirstPage = area.ObjectPageOf(address);
        area.End = address;
        Areas.Add(upper);
    }

    public ModelPage PageAt(ulong page)
    {
        if (!Pages.TryGetValue(page, out var state))
        {
            state = new ModelPage();
            Pages[page] = state;
        }

        return state;
    }

    public int ReadValue(ModelArea area, ulong address)
    {
        var key = KeyOf(area, address, out var data);
        return data is null ? Private.GetValueOrDefault(address) : data.GetValueOrDefault(key);
    }

    public void WriteValue(ModelArea area, ulong address, int value)
    {
        var key = KeyOf(area, address, out var data);
        if (data is null)
        {
            Private[address] = value;
        }
        else
        {
            data[key] = value;
        }
    }

    private static long KeyOf(ModelArea area, ulong address, out Dictionary<long, int>? data)
    {
        data = area.Object?.Data;
        return (area.ObjectPageOf(address) << 10) | (long)((address % Page) / 4);
    }

    /// <summary>Drops the pages of [start, end): states gone, private values zero.</summary>
    public void Zap(ulong start, ulong end)
    {
        for (var page = start; page < end; page += Page)
        {
            Pages.Remove(page);
        }

        foreach (var key in Private.Keys.Where(k => k >= start && k < end).ToList())
        {
            Private.Remove(key);
        }
    }

    public ModelSpace Fork()
    {
        var child = new ModelSpace
        {
            Areas = Areas.Select(a => { var c = a.Clone(); c.Locked = false; return c; }).ToList(),
            Private = new Dictionary<ulong, int>(Private),
        };

        foreach (var (page, state) in Pages)
        {
            var area = Find(page)!;
            if (!area.IsPrivate)
            {
                continue; // shared PTEs are not copied: the child faults them in from the object
            }

            if (state.Kind == ModelPageKind.DeviceExclusive)
            {
                state.Kind = ModelPageKind.Present; // restored in the parent first
            }

            state.DeviceAtomic = false;
            if (state.Kind == ModelPageKind.Present)
            {
                state.MustBeReadOnly = true;
                var copy = state.Clone();
                child.Pages[page] = copy;
            }
        }

        return child;
    }
}
