using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using GpuExclusive.Kernels;
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
    private T* _pointer;

    internal HostMappedArray(ZeroCopyBinder binder, long length)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 1);
        Length = length;
        var bytes = (nuint)(length * sizeof(T));
        bytes = (bytes + PagePool.PageSize - 1) & ~(nuint)(PagePool.PageSize - 1);
        _pointer = (T*)NativeMemory.AlignedAlloc(bytes, PagePool.PageSize);
        NativeMemory.Clear(_pointer, bytes);
        try
        {
            _binding = binder.Bind((IntPtr)_pointer, (long)bytes);
        }
        catch
        {
            NativeMemory.AlignedFree(_pointer);
            throw;
        }

        View = _binding.AsRawArrayView().Cast<T>().SubView(0, length);
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
        NativeMemory.AlignedFree(_pointer);
        _pointer = null;
    }
}
