using Xunit.Abstractions;
using Xunit.Sdk;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// A contract fact: runs on every backend subclass, and is skipped, with the reason, on a backend whose class is marked
/// <see cref="RequiresCudaAttribute"/> when this machine has no CUDA device. (A plain <c>[Fact(Skip = …)]</c> cannot
/// do this: the contract's methods are declared once, on the abstract class.)
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
[XunitTestCaseDiscoverer("GpuExclusive.Tests.Device.DeviceFactDiscoverer", "GpuExclusive.Tests")]
public sealed class DeviceFactAttribute : FactAttribute
{
}

/// <summary>Marks a contract subclass whose tests need a CUDA device.</summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class RequiresCudaAttribute : Attribute
{
}

/// <summary>A fact that only makes sense where no CUDA device exists (it checks the "CUDA is absent" error).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class NoCudaFactAttribute : FactAttribute
{
    public NoCudaFactAttribute()
    {
        if (CudaProbe.HasDevice)
        {
            Skip = "a CUDA device is present, so the no-CUDA error cannot be observed here";
        }
    }
}

/// <summary>Discovers <see cref="DeviceFactAttribute"/> methods, one test case per concrete contract class.</summary>
public sealed class DeviceFactDiscoverer(IMessageSink diagnosticMessageSink) : IXunitTestCaseDiscoverer
{
    public IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute)
    {
        yield return new DeviceTestCase(diagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod);
    }
}

/// <summary>A test case whose skip reason also depends on the backend its class needs.</summary>
public sealed class DeviceTestCase : XunitTestCase
{
    internal const string NoCudaReason = "no CUDA device: ILGPU finds none on this machine, so the CUDA backend of the contract cannot run";

    [Obsolete("Called by the de-serializer; should only be called by deriving classes for de-serialization purposes")]
    public DeviceTestCase()
    {
    }

    public DeviceTestCase(IMessageSink diagnosticMessageSink, TestMethodDisplay display, TestMethodDisplayOptions options, ITestMethod testMethod)
        : base(diagnosticMessageSink, display, options, testMethod)
    {
    }

    // Recomputed rather than serialized: the answer is the same wherever the case is deserialized on this machine.
    protected override string GetSkipReason(IAttributeInfo factAttribute)
    {
        var needsCuda = TestMethod.TestClass.Class.GetCustomAttributes(typeof(RequiresCudaAttribute)).Any();
        return needsCuda && !CudaProbe.HasDevice ? NoCudaReason : base.GetSkipReason(factAttribute);
    }
}
