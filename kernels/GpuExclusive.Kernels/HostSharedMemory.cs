using ILGPU;
using ILGPU.Runtime.Cuda;

namespace GpuExclusive.Kernels;

/// <summary>
/// The kernels' only way to touch a word the host reads or writes while the kernel may run: the control block, device
/// PTEs, hazard words, progress words, op states, old values and the fault buffer (docs/architecture.md, "memory shared with
/// the host"). A compile-time policy: each kernel is instantiated once with <see cref="SystemScope"/> for a GPU and once
/// with <see cref="CpuAcceleratorScope"/> for ILGPU's CPU accelerator.
/// </summary>
/// <remarks>
/// Host-mapped memory is not coherent with a GPU's caches at GPU scope: ILGPU's <see cref="Atomic"/> compiles to
/// GPU-scope <c>atom</c> and a plain load to a weak <c>ld</c>, and on an H200 a kernel polling host-written words with
/// them never saw the host's stores, nor the host the kernel's. Every access here is therefore system-scoped on a GPU.
/// Data atomics on device-exclusive pages are not shared in this sense (no CPU access can happen while a device holds
/// the page) and stay GPU-scoped; what publishes them to the host is the release a thread performs before its hazard
/// word changes (see <see cref="AtomicBatchKernel"/>).
/// </remarks>
internal interface IHostSharedMemory
{
    /// <summary>A load no later access of this thread can move before (<c>ld.acquire.sys</c>).</summary>
    int LoadAcquire(SharedView<int> words, long index);

    /// <inheritdoc cref="LoadAcquire(SharedView{int}, long)"/>
    long LoadAcquire(SharedView<long> words, long index);

    /// <summary>A load that sees the host's latest store but orders nothing (<c>ld.relaxed.sys</c>).</summary>
    int LoadRelaxed(SharedView<int> words, long index);

    /// <summary>A store after every earlier access of this thread, including its GPU-scope data atomics (<c>st.release.sys</c>).</summary>
    void StoreRelease(SharedView<int> words, long index, int value);

    /// <summary>A store the host will see, ordering nothing (<c>st.relaxed.sys</c>).</summary>
    void StoreRelaxed(SharedView<int> words, long index, int value);

    /// <inheritdoc cref="StoreRelaxed(SharedView{int}, long, int)"/>
    void StoreRelaxed(SharedView<long> words, long index, long value);

    /// <summary>Atomic exchange, acquire and release (<c>atom.acq_rel.sys.exch</c>); returns the old value.</summary>
    int Exchange(SharedView<int> words, long index, int value);

    /// <summary>Atomic compare-exchange, acquire and release (<c>atom.acq_rel.sys.cas</c>); returns the old value.</summary>
    int CompareExchange(SharedView<int> words, long index, int comparand, int value);

    /// <summary>Atomic add (<c>atom.relaxed.sys.add</c>); returns the old value.</summary>
    int Add(SharedView<int> words, long index, int value);

    /// <summary>Atomic or (<c>atom.relaxed.sys.or</c>); returns the old value.</summary>
    int Or(SharedView<int> words, long index, int value);

    /// <summary>
    /// Atomic or, acquire and release (<c>atom.acq_rel.sys.or</c>); returns the old value. Used on device PTEs only
    /// (marking a faulted page wanted), where every read is an acquire.
    /// </summary>
    long Or(SharedView<long> words, long index, long value);

    /// <summary>A full fence at system scope (<c>fence.sc.sys</c>): sequentially consistent with the host's locked instructions.</summary>
    void Fence();

    /// <summary>
    /// Polls of the device PTE a thread makes while it first waits for the host to map a faulted page, before it goes on
    /// with its other ops (and comes back to this one at the end of its share): about a hundred microseconds — the
    /// host usually answers in a few.
    /// </summary>
    int GrantSpinLimit { get; }

    /// <summary>
    /// Orders a store before it against a load after it, for the Dekker pair of the hazard protocol: <c>fence.sc.sys</c>
    /// on a GPU; nothing on the CPU accelerator, whose <see cref="LoadAcquire(SharedView{long}, long)"/> is itself a full fence.
    /// </summary>
    void FenceStoreLoad();
}

/// <summary>System scope through inline PTX (<see cref="CudaAsm"/>), on each view's device address; never runs on the CPU accelerator.</summary>
internal readonly struct SystemScope : IHostSharedMemory
{
    public int LoadAcquire(SharedView<int> words, long index)
    {
        CudaAsm.Emit("ld.acquire.sys.u32 %0, [%1];", out int value, words.DeviceAddress + (index * sizeof(int)));
        return value;
    }

    public long LoadAcquire(SharedView<long> words, long index)
    {
        CudaAsm.Emit("ld.acquire.sys.u64 %0, [%1];", out long value, words.DeviceAddress + (index * sizeof(long)));
        return value;
    }

    public int LoadRelaxed(SharedView<int> words, long index)
    {
        CudaAsm.Emit("ld.relaxed.sys.u32 %0, [%1];", out int value, words.DeviceAddress + (index * sizeof(int)));
        return value;
    }

    public void StoreRelease(SharedView<int> words, long index, int value) =>
        CudaAsm.Emit("st.release.sys.u32 [%0], %1;", words.DeviceAddress + (index * sizeof(int)), value);

    public void StoreRelaxed(SharedView<int> words, long index, int value) =>
        CudaAsm.Emit("st.relaxed.sys.u32 [%0], %1;", words.DeviceAddress + (index * sizeof(int)), value);

    public void StoreRelaxed(SharedView<long> words, long index, long value) =>
        CudaAsm.Emit("st.relaxed.sys.u64 [%0], %1;", words.DeviceAddress + (index * sizeof(long)), value);

    public int Exchange(SharedView<int> words, long index, int value)
    {
        CudaAsm.Emit("atom.acq_rel.sys.exch.b32 %0, [%1], %2;", out int old, words.DeviceAddress + (index * sizeof(int)), value);
        return old;
    }

    public int CompareExchange(SharedView<int> words, long index, int comparand, int value)
    {
        CudaAsm.Emit("atom.acq_rel.sys.cas.b32 %0, [%1], %2, %3;", out int old, words.DeviceAddress + (index * sizeof(int)), comparand, value);
        return old;
    }

    public int Add(SharedView<int> words, long index, int value)
    {
        CudaAsm.Emit("atom.relaxed.sys.add.u32 %0, [%1], %2;", out int old, words.DeviceAddress + (index * sizeof(int)), value);
        return old;
    }

    public int Or(SharedView<int> words, long index, int value)
    {
        CudaAsm.Emit("atom.relaxed.sys.or.b32 %0, [%1], %2;", out int old, words.DeviceAddress + (index * sizeof(int)), value);
        return old;
    }

    public long Or(SharedView<long> words, long index, long value)
    {
        CudaAsm.Emit("atom.acq_rel.sys.or.b64 %0, [%1], %2;", out long old, words.DeviceAddress + (index * sizeof(long)), value);
        return old;
    }

    public void Fence() => CudaAsm.Emit("fence.sc.sys;");

    public void FenceStoreLoad() => CudaAsm.Emit("fence.sc.sys;");

    // About a millisecond of polls at PCIe latency.
    public int GrantSpinLimit => 1 << 10;
}

/// <summary>
/// ILGPU's CPU accelerator: kernels are .NET code on host threads, so the host's own memory model applies. Every ILGPU
/// atomic is an <c>Interlocked</c> operation there (a full fence), loads that must see the host's stores are atomic ors
/// of zero, and plain stores suffice where the next shared access is an atomic. (ILGPU's frontend refuses
/// <c>Volatile</c> inside kernels, on the CPU accelerator too.)
/// </summary>
internal readonly struct CpuAcceleratorScope : IHostSharedMemory
{
    public int LoadAcquire(SharedView<int> words, long index) => Atomic.Or(ref words.View[index], 0);

    public long LoadAcquire(SharedView<long> words, long index) => Atomic.Or(ref words.View[index], 0L);

    // A plain load: read once per use (an op's state), never polled, so the JIT cannot hoist it out of a wait.
    public int LoadRelaxed(SharedView<int> words, long index) => words.View[index];

    // A plain store: wherever the kernels release, what must come first are atomics (Interlocked: full fences, which
    // neither the JIT nor the processor moves a later store across) or a Fence() just before it.
    public void StoreRelease(SharedView<int> words, long index, int value) => words.View[index] = value;

    public void StoreRelaxed(SharedView<int> words, long index, int value) => words.View[index] = value;

    public void StoreRelaxed(SharedView<long> words, long index, long value) => words.View[index] = value;

    public int Exchange(SharedView<int> words, long index, int value) => Atomic.Exchange(ref words.View[index], value);

    public int CompareExchange(SharedView<int> words, long index, int comparand, int value) =>
        Atomic.CompareExchange(ref words.View[index], comparand, value);

    public int Add(SharedView<int> words, long index, int value) => Atomic.Add(ref words.View[index], value);

    public int Or(SharedView<int> words, long index, int value) => Atomic.Or(ref words.View[index], value);

    public long Or(SharedView<long> words, long index, long value) => Atomic.Or(ref words.View[index], value);

    public void Fence() => MemoryFence.SystemLevel();

    // About a hundred microseconds of interlocked polls.
    public int GrantSpinLimit => 1 << 12;

    public void FenceStoreLoad()
    {
        // The entry is read next with an Interlocked or (LoadAcquire above): a full fence that keeps the hazard store
        // before it. An explicit fence here cost as much as the op it protects.
    }
}
