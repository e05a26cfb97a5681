using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GpuExclusive.Paging;

/// <summary>The areas of one address space, sorted by start and never overlapping. Guarded by the mmap lock.</summary>
internal sealed class VmaList
{
    private readonly List<Vma> _areas = [];

    // The area the last Find returned, tried first: faults come in runs on one area. Readers (under the read lock) may
    // store it concurrently, but only areas in the list; every change of the list (under the write lock) clears it.
    private Vma? _lastFound;

    internal int Count => _areas.Count;

    internal IReadOnlyList<Vma> Areas => _areas;

    /// <summary>The area containing <paramref name="address"/>, or null.</summary>
    internal Vma? Find(ulong address)
    {
        var last = Volatile.Read(ref _lastFound);
        if (last is not null && address - last.Start < last.End - last.Start)
        {
            return last;
        }

        return FindInList(address);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private Vma? FindInList(ulong address)
    {
        var areas = CollectionsMarshal.AsSpan(_areas);
        var index = IndexOfFirstEndingAfter(areas, address);
        if (index < areas.Length && areas[index].Start <= address)
        {
            Volatile.Write(ref _lastFound, areas[index]);
            return areas[index];
        }

        return null;
    }

    /// <summary>The areas overlapping <c>[start, end)</c>, in order.</summary>
    internal List<Vma> Overlapping(ulong start, ulong end)
    {
        var result = new List<Vma>();
        for (var i = IndexOfFirstEndingAfter(start); i < _areas.Count && _areas[i].Start < end; i++)
        {
            result.Add(_areas[i]);
        }

        return result;
    }

    /// <summary>The first address in <c>[start, end)</c> no area covers, or null when the range is fully mapped.</summary>
    internal ulong? FirstHole(ulong start, ulong end)
    {
        var cursor = start;
        for (var i = IndexOfFirstEndingAfter(start); i < _areas.Count && cursor < end; i++)
        {
            if (_areas[i].Start > cursor)
            {
                return cursor;
            }

            cursor = _areas[i].End;
        }

        return cursor < end ? cursor : null;
    }

    internal void Insert(Vma area)
    {
        _lastFound = null;
        var index = IndexOfFirstEndingAfter(area.Start);
        System.Diagnostics.Debug.Assert(index == _areas.Count || _areas[index].Start >= area.End, "areas overlap");
        _areas.Insert(index, area);
    }

    internal void Remove(Vma area)
    {
        _lastFound = null;
        _areas.Remove(area);
    }

    internal void Clear()
    {
        _lastFound = null;
        _areas.Clear();
    }

    /// <summary>Splits the area containing <paramref name="address"/> there, so an area boundary falls on it.</summary>
    internal void SplitAt(ulong address)
    {
        var area = Find(address);
        if (area is not null && area.Start != address)
        {
            Insert(area.SplitAt(address));
        }
    }

    /// <summary>The lowest address at or above <paramref name="hint"/> with <paramref name="length"/> free bytes and a guard page on each side.</summary>
    internal ulong? FindFreeRange(ulong hint, ulong length, ulong limit)
    {
        var candidate = hint;
        foreach (var area in _areas)
        {
            if (area.End + PagePool.PageSize <= candidate)
            {
                continue;
            }

            if (candidate + length + PagePool.PageSize <= area.Start)
            {
                break;
            }

            candidate = Math.Max(candidate, area.End + PagePool.PageSize);
        }

        return candidate <= limit && length <= limit - candidate ? candidate : null;
    }

    private int IndexOfFirstEndingAfter(ulong address) => IndexOfFirstEndingAfter(CollectionsMarshal.AsSpan(_areas), address);

    // Over the list's own array: every fault looks its area up here.
    private static int IndexOfFirstEndingAfter(ReadOnlySpan<Vma> areas, ulong address)
    {
        int low = 0, high = areas.Length;
        while (low < high)
        {
            var mid = (low + high) >>> 1;
            if (areas[mid].End <= address)
            {
                low = mid + 1;
            }
            else
            {
                high = mid;
            }
        }

        return low;
    }
}
