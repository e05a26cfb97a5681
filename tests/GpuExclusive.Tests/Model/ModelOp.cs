namespace GpuExclusive.Tests.Model;

/// <summary>One generated step. Its numbers are resolved against the model's current state when it runs, so a shrunk sequence stays meaningful.</summary>
public readonly record struct ModelOp(ModelOpKind Kind, int Space, int Area, int Offset, int Length, int Value)
{
    public override string ToString() => $"{Kind}(s{Space} a{Area} o{Offset} n{Length} v{Value})";
}

public enum ModelOpKind
{
    Map, Unmap, Protect, Discard, Fork, Lock, Unlock, ClearSoftDirty,
    Read, Write, AtomicAdd, MakeExclusive, Run, DeviceRead, DeviceWrite, DisposeSpace,
}
