using System.Text;
using CsCheck;
using GpuExclusive.Diagnostics;
using GpuExclusive.Tests.Device;
using Xunit.Abstractions;

namespace GpuExclusive.Tests.Model;

// The engine and the reference model stepped side by side, for one generated sequence.
public sealed partial class ModelBasedTests
{
    /// <summary>One sequence: a fresh pool and root space, the engine and the model stepped side by side.</summary>
    private sealed class Runner(ExclusiveDevice device, PagePlacement placement)
    {
        private readonly List<(AddressSpace Space, DeviceMirror Mirror, ModelSpace Model)> _spaces = [];
        private PagePool _pool = null!;
        private int _step;
        private ModelOp _op;

        public void Execute(ModelOp[] ops)
        {
            _pool = new PagePool(2048, lockMemory: false);
            try
            {
                var root = new AddressSpace(_pool);
                _spaces.Add((root, device.Mirror(root, placement), new ModelSpace()));
                for (_step = 0; _step < ops.Length; _step++)
                {
                    _op = ops[_step];
                    Apply(_op);
                    Compare();
                }

                foreach (var (space, mirror, _) in _spaces)
                {
                    mirror.Dispose();
                    space.Dispose();
                }

                _spaces.Clear();
                InvariantChecker.Check(_pool);
                Assert.True(_pool.Capacity == _pool.FreePages, $"after disposing every space {_pool.Capacity - _pool.FreePages} frames are not back in the pool (#5)");
            }
            finally
            {
                foreach (var (space, mirror, _) in _spaces)
                {
                    mirror.Dispose();
                    space.Dispose();
                }

                _spaces.Clear();
                _pool.Dispose();
            }
        }

        private void Fail(string message) => Assert.Fail($"step {_step} {_op}: {message}");

        /// <summary>Runs <paramref name="engine"/> and checks it throws exactly <paramref name="expected"/> (null: nothing).</summary>
        private T? Expect<T>(Type? expected, Func<T> engine)
        {
            try
            {
                var result = engine();
                if (expected is not null)
                {
                    Fail($"expected {expected.Name}, but the engine returned {result}");
                }

                return result;
            }
            catch (Exception ex) when (ex is not Xunit.Sdk.XunitException)
            {
                if (expected is null || ex.GetType() != expected)
                {
                    Fail($"expected {expected?.Name ?? "no exception"}, but the engine threw {ex.GetType().Name}: {ex.Message}");
                }

                return default;
            }
        }

        private void Expect(Type? expected, Action engine) => Expect<int>(expected, () => { engine(); return 0; });

        /// <summary>A page-granular range starting in area <paramref name="op"/>.Area (possibly running past its end into holes or other areas).</summary>
        private static (ulong Start, ulong End)? RangeOf(ModelSpace model, ModelOp op)
        {
            if (model.Areas.Count == 0)
            {
                return null;
            }

            var area = model.Areas.OrderBy(a => a.Start).ElementAt(op.Area % model.Areas.Count);
            var pages = (int)((area.End - area.Start) / Page);
            var start = area.Start + (ulong)(op.Offset % pages) * Page;
            return (start, start + (ulong)op.Length * Page);
        }

        /// <summary>An int address in area <paramref name="op"/>.Area: page offset up to its size (one past the end is a hole or another area).</summary>
        private static ulong? AddressOf(ModelSpace model, ModelOp op, int salt = 0)
        {
            if (model.Areas.Count == 0)
            {
                return null;
            }

            var area = model.Areas.OrderBy(a => a.Start).ElementAt((op.Area + salt) % model.Areas.Count);
            var pages = (int)((area.End - area.Start) / Page);
            var page = (op.Offset + salt) % (pages + 1);
            return area.Start + (ulong)page * Page + (ulong)Slots[(op.Length + salt) % Slots.Length] * 4;
        }

        private void Apply(ModelOp op)
        {
            var (space, mirror, model) = _spaces[op.Space % _spaces.Count];
            switch (op.Kind)
            {
                case ModelOpKind.Map:
                {
                    var pages = op.Length;
                    var protection = op.Offset % 2 == 0 ? Protection.ReadWrite : Protection.Read;
                    var shared = op.Value % 3 == 0;
                    var address = space.Map((ulong)pages * Page, protection, shared ? Sharing.Shared : Sharing.Private);
                    var end = address + (ulong)pages * Page;
                    if (address % Page != 0 || model.Overlapping(address, end).Any())
                    {
                        Fail($"Map returned 0x{address:x}, which is misaligned or overlaps {string.Join(", ", model.Overlapping(address, end))}");
                    }

                    model.Areas.Add(new ModelArea { Start = address, End = end, Protection = protection, Object = shared ? new ModelObject() : null });
                    model.Zap(address, end);
                    break;
                }

                case ModelOpKind.Unmap:
                {
                    if (RangeOf(model, op) is not var (start, end))
                    {
                        return;
                    }

                    space.Unmap(start, end - start);
                    model.SplitAt(start);
                    model.SplitAt(end);
                    model.Areas.RemoveAll(a => a.Start >= start && a.End <= end);
                    model.Zap(start, end);
                    break;
                }

                case ModelOpKind.Protect:
                {
                    if (RangeOf(model, op) is not var (start, end))
                    {
                        return;
                    }

                    var protection = Protections[Math.Abs(op.Value) % Protections.Length];
                    if (model.HasHole(start, end))
                    {
                        Expect(typeof(ArgumentException), () => space.Protect(start, end - start, protection));
                        return;
                    }

                    space.Protect(start, end - start, protection);
                    model.SplitAt(start);
                    model.SplitAt(end);
                    foreach (var area in model.Overlapping(start, end))
                    {
                        area.Protection = protection;
                    }

                    ForPages(model, start, end, p =>
                    {
                        p.DeviceAtomic = false; // invalidated; the entry itself stays (docs/architecture.md, "fork, unmap, protect, discard")
                        // A device-exclusive entry keeps no write bit: its restore recomputes writability from the area
                        // as it is then (docs/architecture.md, "the revocation path"), so only present PTEs are pinned read-only here.
                        if ((protection & Protection.Write) == 0 && p.Kind != ModelPageKind.DeviceExclusive)
                        {
                            p.MustBeReadOnly = true;
                        }
                    });
                    break;
                }

                case ModelOpKind.Discard:
                {
                    if (RangeOf(model, op) is not var (start, end))
                    {
                        return;
                    }

                    if (model.HasHole(start, end))
                    {
                        Expect(typeof(ArgumentException), () => space.Discard(start, end - start));
                        return;
                    }

                    if (model.Overlapping(start, end).Any(a => a.Locked))
                    {
                        Expect(typeof(InvalidOperationException), () => space.Discard(start, end - start));
                        return;
                    }

                    space.Discard(start, end - start);
                    // Private pages read as zero again; shared pages keep their data in the object.
                    model.Zap(start, end);
                    break;
                }

                case ModelOpKind.Fork:
                {
                    if (_spaces.Count >= MaxSpaces)
                    {
                        return;
                    }

                    var child = space.Fork();
                    _spaces.Add((child, device.Mirror(child, placement), model.Fork()));
                    break;
                }

                case ModelOpKind.Lock:
                case ModelOpKind.Unlock:
                {
                    if (RangeOf(model, op) is not var (start, end))
                    {
                        return;
                    }

                    var locking = op.Kind == ModelOpKind.Lock;
                    if (model.HasHole(start, end))
                    {
                        Expect(typeof(ArgumentException), () => { if (locking) space.Lock(start, end - start); else space.Unlock(start, end - start); });
                        return;
                    }

                    if (locking)
                    {
                        space.Lock(start, end - start);
                    }
                    else
                    {
                        space.Unlock(start, end - start);
                    }

                    model.SplitAt(start);
                    model.SplitAt(end);
                    foreach (var area in model.Overlapping(start, end))
                    {
                        area.Locked = locking;
                        if (locking && area.IsReadable)
                        {
                            for (var page = Math.Max(start, area.Start); page < Math.Min(end, area.End); page += Page)
                            {
                                var state = model.PageAt(page);
                                if (state.Kind == ModelPageKind.NotPresent)
                                {
                                    state.Kind = ModelPageKind.Present; // populated by a read fault: not soft-dirty
                                }
                            }
                        }
                    }

                    break;
                }

                case ModelOpKind.ClearSoftDirty:
                    space.ClearSoftDirty();
                    foreach (var area in model.Areas)
                    {
                        area.SoftDirty = false;
                    }

                    foreach (var state in model.Pages.Values)
                    {
                        state.SoftDirty = false;
                        state.DeviceAtomic = false; // the SoftDirty invalidation stops the device
                        state.MustBeReadOnly = true;
                    }

                    break;

                case ModelOpKind.Read:
                case ModelOpKind.Write:
                case ModelOpKind.AtomicAdd:
                {
                    if (AddressOf(model, op) is not { } address)
                    {
                        return;
                    }

                    var isWrite = op.Kind != ModelOpKind.Read;
                    var area = model.Find(address);
                    var allowed = area is not null && (isWrite ? area.IsWritable : area.IsReadable);
                    int? result = op.Kind switch
                    {
                        ModelOpKind.Read => Expect(allowed ? null : typeof(MemoryAccessException), () => (int?)space.Read<int>(address)),
                        ModelOpKind.Write => Expect(allowed ? null : typeof(MemoryAccessException), () => { space.Write(address, op.Value); return (int?)op.Value; }),
                        _ => Expect(allowed ? null : typeof(MemoryAccessException), () => (int?)space.AtomicAdd(address, op.Value)),
                    };
                    if (!allowed)
                    {
                        return;
                    }

                    var expected = op.Kind switch
                    {
                        ModelOpKind.Read => model.ReadValue(area!, address),
                        ModelOpKind.Write => op.Value,
                        _ => unchecked(model.ReadValue(area!, address) + op.Value),
                    };
                    if (result != expected)
                    {
                        Fail($"{op.Kind} at 0x{address:x} gave {result}, the model says {expected}");
                    }

                    model.WriteValue(area!, address, expected);
                    CpuTouched(model.PageAt(address & ~(Page - 1)), isWrite);
                    break;
                }

                case ModelOpKind.MakeExclusive:
                {
                    if (RangeOf(model, op) is not var (start, end))
                    {
                        return;
                    }

                    var expected = model.HasHole(start, end) ? typeof(MemoryAccessException)
                        : model.Overlapping(start, end).Select(a => !a.IsWritable ? typeof(MemoryAccessException) : !a.IsPrivate ? typeof(NotSupportedException) : null)
                            .FirstOrDefault(t => t is not null);
                    var granted = Expect(expected, () => mirror.MakeExclusive(start, end - start));
                    if (expected is not null)
                    {
                        return;
                    }

                    var pages = (int)((end - start) / Page);
                    if (granted != pages)
                    {
                        Fail($"MakeExclusive of {pages} pages at 0x{start:x} returned {granted}");
                    }

                    ForPages(model, start, end, Granted);
                    break;
                }

                case ModelOpKind.Run:
                {
                    // Distinct addresses: ops of one batch run concurrently, so two on one int could apply in either order.
                    var addresses = Enumerable.Range(0, op.Length).Select(i => AddressOf(model, op, i)).Where(a => a is not null).Select(a => a!.Value).Distinct().ToArray();
                    if (addresses.Length == 0)
                    {
                        return;
                    }

                    var count = addresses.Length;
                    var ops = new AtomicOp[count];
                    var expectedOld = new long[count];
                    long completed = 0, notMapped = 0, denied = 0;
                    for (var i = 0; i < count; i++)
                    {
                        var address = addresses[i];

                        var operand = op.Value + i;
                        ops[i] = new AtomicOp(address, AtomicKind.Add, operand);
                        var area = model.Find(address);
                        if (area is null)
                        {
                            notMapped++;
                        }
                        else if (!area.IsWritable || !area.IsPrivate)
                        {
                            denied++;
                        }
                        else
                        {
                            completed++;
                            var old = model.ReadValue(area, address);
                            expectedOld[i] = old;
                            model.WriteValue(area, address, unchecked(old + operand));
                        }
                    }

                    var oldValues = new long[count];
                    var result = mirror.Run(ops, oldValues);
                    if ((result.Completed, result.NotMapped, result.PermissionDenied) != (completed, notMapped, denied))
                    {
                        Fail($"Run gave {result}, the model says Completed={completed} NotMapped={notMapped} PermissionDenied={denied}");
                    }

                    for (var i = 0; i < count; i++)
                    {
                        if ((int)oldValues[i] != (int)expectedOld[i])
                        {
                            Fail($"Run op {i} ({ops[i]}) returned old value {oldValues[i]}, the model says {expectedOld[i]}");
                        }

                        var area = model.Find(ops[i].Address);
                        if (area is { IsWritable: true, IsPrivate: true })
                        {
                            Granted(model.PageAt(ops[i].Address & ~(Page - 1)));
                        }
                    }

                    break;
                }

                case ModelOpKind.DeviceRead:
                case ModelOpKind.DeviceWrite:
                {
                    if (AddressOf(model, op) is not { } address)
                    {
                        return;
                    }

                    var isWrite = op.Kind == ModelOpKind.DeviceWrite;
                    var area = model.Find(address);
                    var expected = area is null ? DeviceStatus.NotMapped
                        : (isWrite ? area.IsWritable : area.IsReadable) ? DeviceStatus.Ok : DeviceStatus.PermissionDenied;
                    var bytes = BitConverter.GetBytes(op.Value);
                    var status = isWrite ? mirror.Write(address, bytes) : mirror.Read(address, bytes);
                    if (status != expected)
                    {
                        Fail($"device {(isWrite ? "write" : "read")} at 0x{address:x} gave {status}, the model says {expected}");
                    }

                    if (status != DeviceStatus.Ok)
                    {
                        return;
                    }

                    if (isWrite)
                    {
                        model.WriteValue(area!, address, op.Value);
                    }
                    else if (BitConverter.ToInt32(bytes) is var read && read != model.ReadValue(area!, address))
                    {
                        Fail($"device read at 0x{address:x} gave {read}, the model says {model.ReadValue(area!, address)}");
                    }

                    var state = model.PageAt(address & ~(Page - 1));
                    if (state.Kind == ModelPageKind.DeviceExclusive && state.DeviceAtomic)
                    {
                        break; // through the device's own atomic PTE: no CPU page-table change
                    }

                    // hmm_range_fault: faults the page in (restoring an exclusive entry the device no longer maps).
                    CpuTouched(state, isWrite);
                    break;
                }

                case ModelOpKind.DisposeSpace:
                {
                    if (_spaces.Count <= 1)
                    {
                        return;
                    }

                    var index = op.Space % _spaces.Count;
                    mirror.Dispose();
                    space.Dispose();
                    _spaces.RemoveAt(index);
                    break;
                }
            }
        }

        private static void CpuTouched(ModelPage state, bool isWrite)
        {
            state.Kind = ModelPageKind.Present;
            state.DeviceAtomic = false;
            if (isWrite)
            {
                state.SoftDirty = true;
                state.MustBeReadOnly = false;
            }
        }

        private static void Granted(ModelPage state)
        {
            // Faulted in for write (soft-dirty), then converted; the device maps it Atomic.
            state.Kind = ModelPageKind.DeviceExclusive;
            state.DeviceAtomic = true;
            state.SoftDirty = true;
            state.MustBeReadOnly = false;
        }

        private static void ForPages(ModelSpace model, ulong start, ulong end, Action<ModelPage> action)
        {
            for (var page = start; page < end; page += Page)
            {
                if (model.Pages.TryGetValue(page, out var state))
                {
                    action(state);
                }
                else if (model.Find(page) is not null)
                {
                    var fresh = model.PageAt(page);
                    action(fresh);
                    if (fresh.Kind == ModelPageKind.NotPresent && !fresh.SoftDirty && !fresh.DeviceAtomic)
                    {
                        model.Pages.Remove(page);
                    }
                }
            }
        }

        /// <summary>Every observable of every live space against the model, then the engine's invariant checker.</summary>
        private void Compare()
        {
            for (var s = 0; s < _spaces.Count; s++)
            {
                var (space, mirror, model) = _spaces[s];
                var atomic = 0;
                foreach (var area in model.Areas)
                {
                    for (var page = area.Start; page < area.End; page += Page)
                    {
                        var state = model.Pages.GetValueOrDefault(page) ?? new ModelPage();
                        var info = space.Inspect(page);
                        var expectedState = state.Kind switch
                        {
                            ModelPageKind.Present => PageState.Present,
                            ModelPageKind.DeviceExclusive => PageState.DeviceExclusive,
                            _ => PageState.NotPresent,
                        };
                        var where = $"space {s} page 0x{page:x} in {area} (model: {state})";
                        if (info.State != expectedState)
                        {
                            Fail($"{where}: Inspect says {info.State}, the model says {expectedState}");
                        }

                        var softDirty = area.SoftDirty || (state.Kind != ModelPageKind.NotPresent && state.SoftDirty);
                        if (info.SoftDirty != softDirty)
                        {
                            Fail($"{where}: Inspect says SoftDirty={info.SoftDirty}, the model says {softDirty}");
                        }

                        if (info.Writable && (expectedState != PageState.Present || !area.IsWritable || state.MustBeReadOnly))
                        {
                            Fail($"{where}: Inspect says writable, the model says it must not be ({info})");
                        }

                        if (state.DeviceAtomic)
                        {
                            atomic++;
                        }
                    }

                    if (model.Find(area.End) is null && space.Inspect(area.End).State != PageState.Unmapped)
                    {
                        Fail($"space {s} page 0x{area.End:x} after {area}: Inspect says {space.Inspect(area.End).State}, the model says Unmapped");
                    }
                }

                var count = mirror.CountExclusive(Page, (1UL << 47) - Page);
                if (count != atomic)
                {
                    Fail($"space {s}: CountExclusive says {count}, the model says {atomic}");
                }
            }

            InvariantChecker.Check(_pool);
        }
    }
}
