using GpuExclusive.Native;
using GpuExclusive.Workloads.Native;

namespace GpuExclusive.Workloads;

/// <summary>
/// Grant cost per page: <see cref="DeviceMirror.MakeExclusive"/> over <see cref="Pages"/> populated pages against Linux
/// changing the PTEs of as many pages (<c>mprotect</c> to read-only) — the kernel's own price for walking and rewriting
/// a PTE range. DESIGN §7: ≤ 2× at 4096 pages.
/// </summary>
/// <remarks>
/// Each timed operation needs its state restored first, untimed: <see cref="RestorePages"/> before
/// <see cref="MakeExclusive"/>, <see cref="MakeLinuxWritable"/> before <see cref="LinuxMprotect"/>.
/// </remarks>
internal sealed unsafe class GrantWorkload : IDisposable
{
    private readonly PagePool _pool;
    private readonly AddressSpace _space;
    private readonly DeviceMirror _mirror;
    private readonly ulong _address;
    private readonly nint _linux;

    /// <param name="device">The device that takes the pages (the caller's: it outlives the workload).</param>
    /// <param name="pages">Pages granted and protected per operation.</param>
    internal GrantWorkload(ExclusiveDevice device, int pages)
    {
        AnonymousMemory.RequireLinux();
        Pages = pages;
        // Past 64k pages (256 MiB) the pool is not locked: the default RLIMIT_MEMLOCK would refuse it.
        _pool = new PagePool(pages + 64, lockMemory: pages <= 65536);
        _space = new AddressSpace(_pool);
        _address = _space.Map(Bytes, Protection.ReadWrite);
        _mirror = device.Mirror(_space);
        _linux = AnonymousMemory.Map(LinuxBytes, noHugePages: false);
        new Span<byte>((void*)_linux, checked((int)Math.Min(LinuxBytes, int.MaxValue))).Fill(1);
        for (var offset = (nuint)int.MaxValue; offset < LinuxBytes; offset += PagePool.PageSize)
        {
            ((byte*)_linux)[offset] = 1;
        }
    }

    internal int Pages { get; }

    private ulong Bytes => (ulong)Pages * PagePool.PageSize;

    private nuint LinuxBytes => (nuint)Bytes;

    /// <summary>Every page back to a present, writable CPU PTE (revoking the previous grant).</summary>
    internal void RestorePages()
    {
        for (var page = 0UL; page < (ulong)Pages; page++)
        {
            _space.Write(_address + (page * PagePool.PageSize), (int)page);
        }
    }

    internal int MakeExclusive() => _mirror.MakeExclusive(_address, Bytes);

    internal void MakeLinuxWritable() => _ = LinuxMemory.Mprotect(_linux, LinuxBytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite);

    internal int LinuxMprotect() => LinuxMemory.Mprotect(_linux, LinuxBytes, LinuxMemory.ProtRead);

    public void Dispose()
    {
        AnonymousMemory.Unmap(_linux, LinuxBytes);
        _mirror.Dispose();
        _space.Dispose();
        _pool.Dispose();
    }
}
