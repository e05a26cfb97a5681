using System.Diagnostics;
using GpuExclusive.Devices;

namespace GpuExclusive.Tests.Device;

/// <summary>
/// The bound on host waits for a device, without a device: <see cref="DeviceDeadline"/>'s progress rule, and
/// <see cref="DeviceExecutor"/> declaring a device failed when a launch never returns.
/// </summary>
public sealed class BoundedWaitTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(100);

    [Fact]
    public void Deadline_WithAHeartbeatThatNeverMoves_ExpiresAfterTheTimeout_AndNotBefore()
    {
        var deadline = new DeviceDeadline(Timeout, () => 42);
        var clock = Stopwatch.StartNew();

        while (!deadline.Expired())
        {
            Thread.Sleep(1);
            Assert.True(clock.Elapsed < Timeout * 20, "never expired");
        }

        Assert.InRange(clock.Elapsed, Timeout, Timeout * 20);
    }

    [Fact]
    public void Deadline_WhileTheHeartbeatMoves_NeverExpires_EvenOverManyTimeouts()
    {
        long beats = 0;
        var deadline = new DeviceDeadline(Timeout, () => Interlocked.Increment(ref beats));
        var clock = Stopwatch.StartNew();

        while (clock.Elapsed < Timeout * 5)
        {
            Assert.False(deadline.Expired(), $"expired after {clock.Elapsed.TotalMilliseconds:0} ms although the heartbeat moved at every check");
            Thread.Sleep(1);
        }
    }

    [Fact]
    public void Deadline_WhenTheHeartbeatStops_ExpiresATimeoutAfterItsLastMove()
    {
        long beats = 0;
        var moving = true;
        var deadline = new DeviceDeadline(Timeout, () => moving ? Interlocked.Increment(ref beats) : beats);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Timeout * 3)
        {
            Assert.False(deadline.Expired());
            Thread.Sleep(1);
        }

        moving = false;
        var stopped = Stopwatch.StartNew();
        while (!deadline.Expired())
        {
            Thread.Sleep(1);
            Assert.True(stopped.Elapsed < Timeout * 20, "never expired after the heartbeat stopped");
        }

        Assert.InRange(stopped.Elapsed, Timeout / 2, Timeout * 20);
    }

    [Fact]
    public void Launch_ThatNeverReturns_ThrowsDeviceFailed_NamingTheDeviceAndTheWait_AndEveryLaterCallToo()
    {
        using var release = new ManualResetEventSlim();
        var failures = 0;
        var executor = NewExecutor(onFailure: _ => Interlocked.Increment(ref failures));
        try
        {
            var clock = Stopwatch.StartNew();
            DeviceFailedException? failure = null;
            var waiting = TestThread.Start(() => failure = Assert.Throws<DeviceFailedException>(() => executor.Launch(() => release.Wait())));
            Assert.True(waiting.Join(TimeSpan.FromSeconds(20)), "the wait for a launch that never returns hung");
            Assert.NotNull(failure);
            clock.Stop();

            Assert.InRange(clock.Elapsed, Timeout, Timeout * 30);
            Assert.Equal("test device", failure.DeviceName);
            Assert.Equal("a kernel launch to return", failure.WaitingFor);
            Assert.Equal(1, failures);
            Assert.Same(failure, executor.Failure);

            // Later calls fail at once, with the same failure; quiescing (disposal, table swaps) never waits or throws.
            var launched = false;
            var again = Assert.Throws<DeviceFailedException>(() => executor.Launch(() => launched = true));
            Assert.False(launched);
            Assert.Equal(failure.Message, again.Message);
            Assert.Throws<DeviceFailedException>(executor.ThrowIfFailed);
            executor.Quiesce();
            executor.Resume();
            Assert.Equal(1, failures);
        }
        finally
        {
            release.Set();
            Assert.True(executor.DisposeAndJoin(), "the launcher thread did not end once its launch returned");
        }
    }

    [Fact]
    public void Launch_ThatThrows_PassesItsExceptionOn_AndTheDeviceStaysUsable()
    {
        using var executor = NewExecutor(onFailure: _ => Assert.Fail("declared failed"));

        var thrown = Assert.Throws<InvalidOperationException>(() => executor.Launch(() => throw new InvalidOperationException("from the launch")));
        var ran = false;
        executor.Launch(() => ran = true);

        Assert.Equal("from the launch", thrown.Message);
        Assert.True(ran);
        Assert.Null(executor.Failure);
    }

    [Fact]
    public void Launch_RunsItsPrepare_BeforeTheLaunchIsHandedOver_AndBeforeTheFirstServiceCall()
    {
        // The service reads what the launch records (its fault ring) from its first call, which comes as soon as the
        // launch is handed over: the previous launch's records must be gone by then.
        using var executor = NewExecutor(onFailure: _ => Assert.Fail("declared failed"));
        var events = new System.Collections.Concurrent.ConcurrentQueue<string>();

        executor.Launch(
            () =>
            {
                events.Enqueue("launch");
                Thread.Sleep(20);
            },
            () =>
            {
                events.Enqueue("service");
                return false;
            },
            prepare: () => events.Enqueue("prepare"));

        var order = events.ToArray();
        Assert.Equal("prepare", order[0]);
        Assert.Equal(1, order.Count(e => e == "prepare"));
        Assert.Contains("launch", order);
        Assert.Contains("service", order);
    }

    [Fact]
    public void Fail_CalledTwice_DeclaresOnce()
    {
        var failures = 0;
        using var executor = NewExecutor(onFailure: _ => Interlocked.Increment(ref failures));

        var first = executor.Fail("a hazard word");
        var second = executor.Fail("something else");

        Assert.Equal(1, failures);
        Assert.Equal("a hazard word", second.WaitingFor);
        Assert.Same(first, second.InnerException);
    }

    private static DeviceExecutor NewExecutor(Action<DeviceFailedException> onFailure) =>
        new("test device", _ => { }, TimeSpan.FromMilliseconds(1), residentIdle: null, Timeout, () => 0, onFailure, () => { });
}
