using System.Runtime.CompilerServices;

namespace GpuExclusive.Diagnostics;

/// <summary>
/// The live engine objects the invariant checker walks (docs/architecture.md, "invariants"): each address space is
/// registered under its pool, each device mirror under its space. The checker sits above every layer, so the layers
/// cannot hand their objects to it; they register here, in a layer below them all, and only the checker looks.
/// </summary>
/// <remarks>
/// Keyed weakly by owner: a pool or space that is garbage-collected takes its entry with it. Thread-safe: each owner's
/// list is its own lock.
/// </remarks>
internal static class InvariantRegistry
{
    private static readonly ConditionalWeakTable<object, List<object>> Members = new();

    /// <summary>Registers <paramref name="member"/> under <paramref name="owner"/> (a space under its pool, a mirror under its space).</summary>
    internal static void Add(object owner, object member)
    {
        var members = Members.GetValue(owner, static _ => []);
        lock (members)
        {
            members.Add(member);
        }
    }

    /// <summary>Forgets <paramref name="member"/>; nothing when it was not registered.</summary>
    internal static void Remove(object owner, object member)
    {
        if (Members.TryGetValue(owner, out var members))
        {
            lock (members)
            {
                members.Remove(member);
            }
        }
    }

    /// <summary>A snapshot of the members of <paramref name="owner"/> of type <typeparamref name="T"/>.</summary>
    internal static List<T> Of<T>(object owner)
    {
        if (!Members.TryGetValue(owner, out var members))
        {
            return [];
        }

        lock (members)
        {
            return [.. members.OfType<T>()];
        }
    }
}
