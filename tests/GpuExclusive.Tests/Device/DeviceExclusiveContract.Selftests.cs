using System.Runtime.InteropServices;

namespace GpuExclusive.Tests.Device;

/// <summary>The three Linux selftests that issue EXCLUSIVE (<c>tools/testing/selftests/mm/hmm-tests.c</c>).</summary>
public abstract partial class DeviceExclusiveContract
{
    /// <summary>hmm-tests <c>exclusive</c>.</summary>
    [DeviceFact]
    public void Selftest_Exclusive_GrantAll_DeviceReadsI_CpuIncrementsEverywhere_NothingExclusiveRemains()
    {
        var buffer = MapIota(SelftestPages);
        var length = SelftestPages * Page;
        var before = Enumerable.Range(0, SelftestPages).Select(p => Space.Inspect(buffer + ((ulong)p * Page))).ToArray();

        Assert.Equal(SelftestPages, Mirror.MakeExclusive(buffer, length));

        Assert.Equal(SelftestPages, Mirror.CountExclusive(buffer, length));
        for (var p = 0; p < SelftestPages; p++)
        {
            var info = Space.Inspect(buffer + ((ulong)p * Page));
            Assert.Equal(PageState.DeviceExclusive, info.State);
            Assert.Equal(before[p].Frame, info.Frame);
            Assert.Equal(1, info.MapCount); // modern Linux: conversion keeps mapcount and refcount
            Assert.Equal(1, info.RefCount);
        }

        var mirrored = new int[SelftestPages * (int)Page / sizeof(int)];
        Assert.Equal(DeviceStatus.Ok, Mirror.Read(buffer, MemoryMarshal.AsBytes(mirrored.AsSpan())));
        for (var i = 0; i < mirrored.Length; i++)
        {
            Assert.Equal(i, mirrored[i]);
        }

        Assert.Equal(SelftestPages, Mirror.CountExclusive(buffer, length)); // reading its own pages costs the device nothing

        for (var i = 0; i < mirrored.Length; i++)
        {
            var at = buffer + ((ulong)i * sizeof(int));
            Assert.Equal(i, Space.Read<int>(at));
            Space.Write(at, i + 1);
        }

        var after = CpuInts(Space, buffer, SelftestPages);
        for (var i = 0; i < after.Length; i++)
        {
            Assert.Equal(i + 1, after[i]);
        }

        Assert.Equal(0, Mirror.CountExclusive(buffer, length));
        for (var p = 0; p < SelftestPages; p++)
        {
            var info = Space.Inspect(buffer + ((ulong)p * Page));
            Assert.Equal(PageState.Present, info.State);
            Assert.Equal(before[p].Frame, info.Frame);
            Assert.Equal(1, info.MapCount);
            Assert.Equal(1, info.RefCount);
        }

        AssertCleanTeardown();
    }

    /// <summary>hmm-tests <c>exclusive_mprotect</c>, ending with the zap of still-exclusive entries.</summary>
    [DeviceFact]
    public void Selftest_ExclusiveMprotect_DeviceWriteAfterProtectRead_IsPermissionDenied_AndUnmapWhileExclusiveFreesTheFrames()
    {
        var buffer = MapIota(SelftestPages);
        var length = SelftestPages * Page;
        Assert.Equal(SelftestPages, Mirror.MakeExclusive(buffer, length));
        Assert.Equal(SelftestPages, Mirror.CountExclusive(buffer, length));

        Space.Protect(buffer, length, Protection.Read);

        Assert.Equal(0, Mirror.CountExclusive(buffer, length)); // mprotect's invalidation erased the device entries
        Assert.Equal(DeviceStatus.PermissionDenied, Mirror.Write(buffer, MemoryMarshal.AsBytes<int>([-1])));
        Assert.Equal(DeviceStatus.PermissionDenied, Mirror.Write(buffer + length - Page, MemoryMarshal.AsBytes<int>([-1])));
        var firstPage = new int[Page / sizeof(int)];
        Assert.Equal(DeviceStatus.Ok, Mirror.Read(buffer, MemoryMarshal.AsBytes(firstPage.AsSpan())));
        for (var i = 0; i < firstPage.Length; i++)
        {
            Assert.Equal(i, firstPage[i]); // the refused write wrote nothing
        }

        for (var p = 1; p < SelftestPages; p++)
        {
            Assert.Equal(PageState.DeviceExclusive, Space.Inspect(buffer + ((ulong)p * Page)).State); // mprotect keeps the entry
        }

        // docs/architecture.md, "fork, unmap, protect, discard": Protect keeps device-exclusive entries, now in a read-only mapping, exactly as Linux does before
        // the selftest's munmap; the invariants must accept that state (invariant 1 of docs/architecture.md, "invariants", is about where entries are created).
        AssertInvariants();
        var freeBefore = Pool.FreePages;
        Space.Unmap(buffer, length);

        Assert.Equal(freeBefore + SelftestPages, Pool.FreePages);
        Assert.Equal(PageState.Unmapped, Space.Inspect(buffer + Page).State);
        Assert.Equal(DeviceStatus.NotMapped, Mirror.Read(buffer + Page, new byte[4]));
        AssertCleanTeardown();
    }

    /// <summary>hmm-tests <c>exclusive_cow</c>: fork restores the parent's entries; the child shares copy-on-write and never holds one.</summary>
    [DeviceFact]
    public void Selftest_ExclusiveCow_ForkRestoresTheParent_ChildNeverExclusive_WritesStayPrivate()
    {
        var buffer = MapIota(SelftestPages);
        var length = SelftestPages * Page;
        Assert.Equal(SelftestPages, Mirror.MakeExclusive(buffer, length));

        var child = Own(Space.Fork());

        Assert.Equal(0, Mirror.CountExclusive(buffer, length));
        for (var p = 0; p < SelftestPages; p++)
        {
            var at = buffer + ((ulong)p * Page);
            var parent = Space.Inspect(at);
            var inChild = child.Inspect(at);
            Assert.NotEqual(PageState.DeviceExclusive, parent.State);
            Assert.NotEqual(PageState.DeviceExclusive, inChild.State);
            Assert.False(parent.Writable); // copy-on-write in both
            Assert.Equal(parent.Frame, inChild.Frame);
            Assert.Equal(2, parent.MapCount);
        }

        AssertInvariants();
        foreach (var space in new[] { Space, child })
        {
            for (var i = 0; i < SelftestPages * (int)Page / sizeof(int); i++)
            {
                var at = buffer + ((ulong)i * sizeof(int));
                Assert.Equal(i, space.Read<int>(at)); // the parent's increments are not visible in the child
                space.Write(at, i + 1);
            }
        }

        var parentInts = CpuInts(Space, buffer, SelftestPages);
        var childInts = CpuInts(child, buffer, SelftestPages);
        for (var i = 0; i < parentInts.Length; i++)
        {
            Assert.Equal(i + 1, parentInts[i]);
            Assert.Equal(i + 1, childInts[i]);
        }

        for (var p = 0; p < SelftestPages; p++)
        {
            var at = buffer + ((ulong)p * Page);
            Assert.NotEqual(Space.Inspect(at).Frame, child.Inspect(at).Frame);
            Assert.NotEqual(PageState.DeviceExclusive, child.Inspect(at).State);
        }

        AssertCleanTeardown();
    }
}
