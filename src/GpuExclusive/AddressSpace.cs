using Microsoft.Extensions.Logging;

namespace GpuExclusive;

/// <summary>A virtual address space over a <see cref="PagePool"/>: VMAs, a page table, MMU notifiers (the engine's <c>mm_struct</c>).</summary>
public sealed class AddressSpace : IDisposable
{
    public AddressSpace(PagePool pool, ILoggerFactory? loggerFactory = null) => throw new NotImplementedException();
    public ulong Map(ulong length, Protection protection, Sharing sharing = Sharing.Private) => throw new NotImplementedException();
    public void Unmap(ulong address, ulong length) => throw new NotImplementedException();
    public void Protect(ulong address, ulong length, Protection protection) => throw new NotImplementedException();
    public void Lock(ulong address, ulong length) => throw new NotImplementedException();
    public void Unlock(ulong address, ulong length) => throw new NotImplementedException();
    public void Discard(ulong address, ulong length) => throw new NotImplementedException();
    public AddressSpace Fork() => throw new NotImplementedException();
    public void ClearSoftDirty() => throw new NotImplementedException();
    public T Read<T>(ulong address) where T : unmanaged => throw new NotImplementedException();
    public void Write<T>(ulong address, T value) where T : unmanaged => throw new NotImplementedException();
    public void Read(ulong address, Span<byte> destination) => throw new NotImplementedException();
    public void Write(ulong address, ReadOnlySpan<byte> source) => throw new NotImplementedException();
    public int AtomicAdd(ulong address, int value) => throw new NotImplementedException();
    public PageInfo Inspect(ulong address) => throw new NotImplementedException();
    public IDisposable RegisterNotifier(MmuNotifier notifier) => throw new NotImplementedException();
    public IDisposable InsertIntervalNotifier(MmuIntervalNotifier notifier, ulong address, ulong length) => throw new NotImplementedException();
    public void Dispose() => throw new NotImplementedException();
}
