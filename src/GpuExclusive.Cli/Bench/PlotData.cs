namespace GpuExclusive.Cli.Bench;

/// <summary>Raw figures kept for the charts.</summary>
internal sealed class PlotData
{
    public List<double> RevokeIdleNs { get; } = [];
    public List<double> RevokeRunningNs { get; } = [];
    public List<double> MinorFaultNs { get; } = [];
    public List<(int Pages, double RoundTripsPerSecond, double TwoDevicesPerSecond)> PingPong { get; } = [];
    public List<(int Pages, double GrantNsPerPage, double MprotectNsPerPage, double ForkNsPerPage, double ForkFloorNsPerPage)> Scale { get; } = [];

    public void Clear()
    {
        RevokeIdleNs.Clear();
        RevokeRunningNs.Clear();
        MinorFaultNs.Clear();
        PingPong.Clear();
        Scale.Clear();
    }
}
