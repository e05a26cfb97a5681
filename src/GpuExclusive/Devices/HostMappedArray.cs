using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using GpuExclusive.Kernels;
using GpuExclusive.Native;
using ILGPU.Runtime;

namespace GpuExclusive.Devices;

/// <summary>
/// An array in page-aligned host memory that the host uses through a pointer and kernels through <see cref="View"/>,
/// zero-copy: the device page table, batches and the control block, which both sides read and write while a kernel
/// runs. Host accesses that race with a running kernel use <see cref="Volatile"/> or <see cref="Interlocked"/>.
/// </summary>
internal sealed unsafe class HostMappedArray<T> : IDisposable
    where T : unmanaged
{
    private readonly MemoryBuffer _binding;
    private readonly nuint _bytes;
    private readonly bool _mapped;
    private T* _pointer;

    // Arrays this large (a batch of tens of thousands of ops and up) are mapped with transparent huge pages: a batch
    // of a million ops is 44 MB, and faulting that in 4 KiB at a time cost more than running the batch.
    private const nuint HugePage = 2 << 20;

    internal HostMappedArray(ZeroCopyBinder binder, long length)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 1);
        Length = length;
        var bytes = (nuint)(length * sizeof(T));
        bytes = (bytes + PagePool.PageSize - 1) & ~(nuint)(PagePool.PageSize - 1);
        _bytes = bytes;
        _mapped = bytes >= HugePage && LinuxMemory.IsSupported;
        _pointer = _mapped ? MapZeroed(bytes) : AllocateZeroed(bytes);
        try
        {
            _binding = binder.Bind((IntPtr)_pointer, (long)bytes);
        }
        catch
        {
            Free();
            throw;
        }

        View = _binding.AsRawArrayView().Cast<T>().SubView(0, length);
    }

    private static T* AllocateZeroed(nuint bytes)
    {
        var pointer = NativeMemory.AlignedAlloc(bytes, PagePool.PageSize);
        NativeMemory.Clear(pointer, bytes);
        return (T*)pointer;
    }

    /// <summary>An anonymous mapping (zero-filled by the kernel as it is touched), huge-page aligned and advised.</summary>
    private static T* MapZeroed(nuint bytes)
    {
        var span = bytes + HugePage;
        var raw = LinuxMemory.Mmap(0, span, LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous, -1, 0);
        if (raw == LinuxMemory.MapFailed)
        {
            throw new InsufficientMemoryException($"mmap of {bytes} bytes for a host-mapped array failed (errno {Marshal.GetLastPInvokeError()})");
        }

        // Keep the huge-page-aligned part; give the slack at both ends back.
        var start = (nint)(((nuint)raw + HugePage - 1) & ~(HugePage - 1));
        if (start > raw)
        {
            LinuxMemory.Munmap(raw, (nuint)(start - raw));
        }

        var tail = (nuint)((raw + (nint)span) - (start + (nint)bytes));
        if (tail > 0)
        {
            LinuxMemory.Munmap(start + (nint)bytes, tail);
        }

        // Advice only: without transparent huge pages the mapping works all the same.
        LinuxMemory.Madvise(start, bytes, LinuxMemory.MadvHugePage);
        return (T*)start;
    }

    private void Free()
    {
        if (_mapped)
        {
            LinuxMemory.Munmap((nint)_pointer, _bytes);
        }
        else
        {
            NativeMemory.AlignedFree(_pointer);
        }

        _pointer = null;
    }

    internal long Length { get; }

    /// <summary>The kernels' view of the array.</summary>
    internal ArrayView<T> View { get; }

    /// <summary>
    /// The kernels' system-scope view of the first <paramref name="length"/> elements: the view and its device address
    /// (for CUDA, the device pointer of the host-mapped memory).
    /// </summary>
    internal SharedView<T> Shared(long length) => new() { View = View.SubView(0, length), DeviceAddress = _binding.NativePtr.ToInt64() };

    /// <summary>The kernels' system-scope view of the whole array.</summary>
    internal SharedView<T> Shared() => new() { View = View, DeviceAddress = _binding.NativePtr.ToInt64() };

    /// <summary>The accelerator buffer over the memory (byte-granular).</summary>
    internal MemoryBuffer Binding => _binding;

    internal T* Pointer => _pointer;

    /// <summary>True once the memory was freed.</summary>
    internal bool IsFreed => _pointer == null;

    internal ref T this[long index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if ((ulong)index >= (ulong)Length)
            {
                throw new IndexOutOfRangeException();
            }

            // A batch racing with the disposal of its device or mirror must see a clean error, not a null pointer.
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            return ref _pointer[index];
        }
    }

    internal Span<T> AsSpan(int length) => new(_pointer, length);

    public void Dispose()
    {
        if (_pointer == null)
        {
            return;
        }

        _binding.Dispose();
        Free();
    }
}
