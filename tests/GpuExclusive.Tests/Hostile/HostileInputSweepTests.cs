using System.Reflection;
using System.Runtime.CompilerServices;
using GpuExclusive.Tests.Device;
using GpuExclusive.Tests.Engine;

namespace GpuExclusive.Tests.Hostile;

/// <summary>
/// Hostile input for every public method of the engine (issue 6, item 3), in one table (<see cref="HostileCases"/>):
/// each call is refused with the documented exception and a message that names the problem, or answered as documented,
/// and afterwards the state is unchanged, the invariants (docs/architecture.md) hold, and the space, the mirror and the pool
/// still work. A guard fails when a public member has neither cases nor a reason to have none.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class HostileInputSweepTests(HostileSweepFixture fixture) : IClassFixture<HostileSweepFixture>
{
    /// <summary>The engine's public types whose every member the sweep must cover.</summary>
    private static readonly Type[] EngineTypes = [typeof(PagePool), typeof(AddressSpace), typeof(DeviceMirror), typeof(ExclusiveDevice), typeof(PreparedBatch)];

    public static TheoryData<string> Cases() => new(HostileCases.All.Select(c => c.Id));

    [Theory]
    [MemberData(nameof(Cases))]
    public void HostileCall_IsAnsweredAsDocumented_AndChangesNothing(string id)
    {
        var hostile = HostileCases.All.Single(c => c.Id == id);
        using var world = new HostileWorld(fixture);
        var before = world.Snapshot();

        var error = Record.Exception(() => hostile.Call(world));

        if (hostile.Throws is null)
        {
            Assert.True(error is null, $"expected an answer, got {error}");
        }
        else
        {
            Assert.True(error is not null, $"expected {hostile.Throws.Name}, but the call succeeded");
            Assert.True(hostile.Throws.IsInstanceOfType(error), $"expected {hostile.Throws.Name}, got {error}");
            foreach (var word in hostile.MustName(world))
            {
                Assert.True(error.Message.Contains(word, StringComparison.Ordinal), $"the message does not name '{word}': {error.Message}");
            }
        }

        hostile.Check?.Invoke(world, error);
        HostileWorld.AssertUnchanged(before, world.Snapshot(), id);
        Invariants.Check(world.Pool);
        world.AssertStillWorks();
    }

    [Fact]
    public void EveryPublicMember_HasHostileCases_OrAReasonWhyNot()
    {
        var members = PublicMembersToCover().Select(HostileCases.KeyOf).ToHashSet();
        var covered = HostileCases.All.Select(c => c.Member).ToHashSet();

        var missing = members.Where(m => !covered.Contains(m) && !HostileCases.Exempt.ContainsKey(m)).Order().ToList();
        var stale = covered.Concat(HostileCases.Exempt.Keys).Where(m => !members.Contains(m) && !m.StartsWith("InvariantChecker.", StringComparison.Ordinal)).Order().ToList();
        var both = covered.Intersect(HostileCases.Exempt.Keys).Order().ToList();

        Assert.True(missing.Count == 0, "public members without hostile cases (add cases to HostileCases, or an exemption with a reason): " + string.Join("; ", missing));
        Assert.True(stale.Count == 0, "cases or exemptions naming no public member (renamed?): " + string.Join("; ", stale));
        Assert.True(both.Count == 0, "members both exempt and covered: " + string.Join("; ", both));
    }

    [Fact]
    public void CaseNames_AreUnique()
    {
        var duplicates = HostileCases.All.GroupBy(c => c.Id).Where(g => g.Count() > 1).Select(g => g.Key).ToList();

        Assert.Empty(duplicates);
    }

    /// <summary>
    /// Every public constructor, method and property of the engine types, and every public constructor or method of the
    /// library's other public types that takes an address or a length (a <see cref="ulong"/>).
    /// </summary>
    private static IEnumerable<MemberInfo> PublicMembersToCover()
    {
        const BindingFlags Declared = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (var type in EngineTypes)
        {
            foreach (var member in type.GetConstructors(Declared).Cast<MemberInfo>()
                .Concat(type.GetMethods(Declared).Where(m => !m.IsSpecialName))
                .Concat(type.GetProperties(Declared).Where(p => p.GetMethod?.IsPublic == true)))
            {
                yield return member;
            }
        }

        foreach (var type in typeof(PagePool).Assembly.GetExportedTypes().Except(EngineTypes).Where(t => !t.IsEnum))
        {
            foreach (var method in type.GetConstructors(Declared).Cast<MethodBase>().Concat(type.GetMethods(Declared)))
            {
                if ((method.IsConstructor || !method.IsSpecialName) && method.GetCustomAttribute<CompilerGeneratedAttribute>() is null &&
                    method.GetParameters().Any(p => (p.ParameterType.IsByRef ? p.ParameterType.GetElementType() : p.ParameterType) == typeof(ulong)))
                {
                    yield return method;
                }
            }
        }
    }
}
