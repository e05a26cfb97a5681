using System.Collections;
using Microsoft.Extensions.Logging;

namespace GpuExclusive.Tests.Configuration;

public sealed class EngineSettingsLoaderTests : IDisposable
{
    private static readonly Hashtable NoEnvironment = new();
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Load_WithNothingGiven_ReturnsTheDocumentedDefaults()
    {
        EngineSettings settings = EngineSettingsLoader.Load(null, null, NoEnvironment);

        Assert.Equal(16384, settings.PoolPages);
        Assert.Equal(AcceleratorKind.Auto, settings.Accelerator);
        Assert.Equal(0, settings.KernelGroupSize);
        Assert.Equal(0, settings.KernelGroups);
        Assert.Equal(50, settings.StopPollIntervalMicroseconds);
        Assert.Equal(1024, settings.ResidentBatchOps);
        Assert.Equal(500, settings.ResidentIdleMicroseconds);
        Assert.Equal(10_000, settings.DeviceTimeoutMilliseconds);
        Assert.Equal(PagePlacement.InPlace, settings.PagePlacement);
        Assert.Equal(16384, settings.DeviceResidentPages);
        Assert.Equal(LogLevel.Warning, settings.DefaultLogLevel);
        Assert.Empty(settings.CategoryLogLevels);
        Assert.All(settings.Values, v => Assert.Equal(SettingSource.Default, v.Source));
        Assert.Equal(EngineSettingsLoader.KnownKeys, settings.Values.Select(v => v.Key).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void ShippedRuntimeSettings_IsValid_AndMatchesTheDefaults()
    {
        string shipped = Path.Combine(RepositoryRoot(), "runtimesettings.json");

        EngineSettings fromFile = EngineSettingsLoader.Load(shipped, null, NoEnvironment);
        var defaults = new EngineSettings();

        Assert.Equal(defaults.PoolPages, fromFile.PoolPages);
        Assert.Equal(defaults.Accelerator, fromFile.Accelerator);
        Assert.Equal(defaults.KernelGroupSize, fromFile.KernelGroupSize);
        Assert.Equal(defaults.KernelGroups, fromFile.KernelGroups);
        Assert.Equal(defaults.StopPollIntervalMicroseconds, fromFile.StopPollIntervalMicroseconds);
        Assert.Equal(defaults.ResidentBatchOps, fromFile.ResidentBatchOps);
        Assert.Equal(defaults.ResidentIdleMicroseconds, fromFile.ResidentIdleMicroseconds);
        Assert.Equal(defaults.DeviceTimeoutMilliseconds, fromFile.DeviceTimeoutMilliseconds);
        Assert.Equal(defaults.DeviceQuantumMicroseconds, fromFile.DeviceQuantumMicroseconds);
        Assert.Equal(defaults.PagePlacement, fromFile.PagePlacement);
        Assert.Equal(defaults.DeviceResidentPages, fromFile.DeviceResidentPages);
        Assert.Equal(defaults.DefaultLogLevel, fromFile.DefaultLogLevel);
        Assert.All(fromFile.Values, v => Assert.NotEqual(SettingSource.Default, v.Source)); // the file names every key
    }

    [Fact]
    public void File_OverridesDefaults_AndEveryValueNamesItsSource()
    {
        string file = _temp.Write("""
            {
              // comments are allowed, as in appsettings.json
              "engine": { "poolPages": 128, "Accelerator": "cpu", "KernelGroups": 4 },
              "Logging": { "LogLevel": { "Default": "debug", "GpuExclusive.Paging": "Trace" } }
            }
            """);

        EngineSettings settings = EngineSettingsLoader.Load(file, null, NoEnvironment);

        Assert.Equal(128, settings.PoolPages);
        Assert.Equal(AcceleratorKind.Cpu, settings.Accelerator);
        Assert.Equal(4, settings.KernelGroups);
        Assert.Equal(LogLevel.Debug, settings.DefaultLogLevel);
        Assert.Equal(LogLevel.Trace, settings.CategoryLogLevels["GpuExclusive.Paging"]);
        SettingValue pool = Assert.Single(settings.Values, v => v.Key == "Engine:PoolPages");
        Assert.Equal(new SettingValue("Engine:PoolPages", "128", SettingSource.File, file), pool);
        Assert.Equal(SettingSource.Default, Assert.Single(settings.Values, v => v.Key == "Engine:KernelGroupSize").Source);
    }

    [Fact]
    public void PagePlacement_AndTheResidentBudget_ComeFromTheFile_AndTheEnvironment()
    {
        string file = _temp.Write("""{ "Engine": { "PagePlacement": "deviceresident", "DeviceResidentPages": 64 } }""");
        var environment = new Hashtable { ["GPUX_ENGINE__DEVICERESIDENTPAGES"] = "128" };

        EngineSettings settings = EngineSettingsLoader.Load(file, null, environment);

        Assert.Equal(PagePlacement.DeviceResident, settings.PagePlacement);
        Assert.Equal(128, settings.DeviceResidentPages);
        Assert.Equal(SettingSource.Environment, Assert.Single(settings.Values, v => v.Key == "Engine:DeviceResidentPages").Source);
    }

    [Fact]
    public void Environment_BeatsFile()
    {
        string file = _temp.Write("""{ "Engine": { "PoolPages": 128 } }""");
        var environment = new Hashtable { ["GPUX_ENGINE__POOLPAGES"] = "256", ["PATH"] = "/bin", ["GPUXENGINE__POOLPAGES"] = "1" };

        EngineSettings settings = EngineSettingsLoader.Load(file, null, environment);

        Assert.Equal(256, settings.PoolPages);
        Assert.Equal(
            new SettingValue("Engine:PoolPages", "256", SettingSource.Environment, "GPUX_ENGINE__POOLPAGES"),
            Assert.Single(settings.Values, v => v.Key == "Engine:PoolPages"));
    }

    [Fact]
    public void Flag_BeatsEnvironment()
    {
        var environment = new Hashtable { ["GPUX_ENGINE__POOLPAGES"] = "256", ["GPUX_LOGGING__LOGLEVEL__DEFAULT"] = "Error" };
        var overrides = new Dictionary<string, string?> { ["Engine:PoolPages"] = "512" };

        EngineSettings settings = EngineSettingsLoader.Load(null, overrides, environment);

        Assert.Equal(512, settings.PoolPages);
        Assert.Equal(SettingSource.CommandLine, Assert.Single(settings.Values, v => v.Key == "Engine:PoolPages").Source);
        Assert.Equal(LogLevel.Error, settings.DefaultLogLevel);
        Assert.Equal(SettingSource.Environment, Assert.Single(settings.Values, v => v.Key == "Logging:LogLevel:Default").Source);
    }

    [Fact]
    public void CategoryLevels_FromEveryLayer_AreMerged()
    {
        string file = _temp.Write("""{ "Logging": { "LogLevel": { "GpuExclusive": "Information", "GpuExclusive.Memory": "Debug" } } }""");
        var environment = new Hashtable { ["GPUX_LOGGING__LOGLEVEL__GPUEXCLUSIVE"] = "Error" };

        EngineSettings settings = EngineSettingsLoader.Load(file, null, environment);

        Assert.Equal(LogLevel.Error, settings.CategoryLogLevels["GpuExclusive"]);
        Assert.Equal(LogLevel.Debug, settings.CategoryLogLevels["GpuExclusive.Memory"]);
    }

    public static TheoryData<string, string, string> BadFiles => new()
    {
        // file content, key the message must name, a word of the problem
        { """{ "Engine": { "PoolPages": } }""", "", "malformed JSON" },
        { """{ "Engine": { "PoolPages": 1 """, "", "malformed JSON" },
        { "", "", "malformed JSON" },
        { """{ "Engine": { "PoolPage": 1 } }""", "Engine:PoolPage", "unknown key" },
        { """{ "Engin": { "PoolPages": 1 } }""", "Engin", "unknown key" },
        { """{ "Logging": { "Console": { "FormatterName": "json" } } }""", "Logging:Console", "unknown key" },
        { """{ "Engine": 5 }""", "Engine", "must be a section" },
        { """{ "Engine": { "PoolPages": "lots" } }""", "Engine:PoolPages", "not a whole number" },
        { """{ "Engine": { "PoolPages": 1.5 } }""", "Engine:PoolPages", "not a whole number" },
        { """{ "Engine": { "PoolPages": 0 } }""", "Engine:PoolPages", "out of range" },
        { """{ "Engine": { "PoolPages": 2147483648 } }""", "Engine:PoolPages", "out of range" },
        { """{ "Engine": { "PoolPages": null } }""", "Engine:PoolPages", "no value" },
        { """{ "Engine": { "KernelGroupSize": 2048 } }""", "Engine:KernelGroupSize", "out of range" },
        { """{ "Engine": { "KernelGroups": -1 } }""", "Engine:KernelGroups", "out of range" },
        { """{ "Engine": { "StopPollIntervalMicroseconds": 0 } }""", "Engine:StopPollIntervalMicroseconds", "out of range" },
        { """{ "Engine": { "Accelerator": "Quantum" } }""", "Engine:Accelerator", "not one of" },
        { """{ "Engine": { "Accelerator": "1" } }""", "Engine:Accelerator", "not one of" },
        { """{ "Logging": { "LogLevel": { "Default": "Loud" } } }""", "Logging:LogLevel:Default", "not a log level" },
        { """{ "Logging": { "LogLevel": { "GpuExclusive": "" } } }""", "Logging:LogLevel:GpuExclusive", "no value" },

        // Wrong types.
        { """{ "Engine": { "PoolPages": true } }""", "Engine:PoolPages", "'True' is not a whole number" },
        { """{ "Engine": { "PoolPages": "0x10" } }""", "Engine:PoolPages", "not a whole number" },
        { """{ "Engine": { "PoolPages": "NaN" } }""", "Engine:PoolPages", "not a whole number" },
        { """{ "Engine": { "Accelerator": 1 } }""", "Engine:Accelerator", "not one of" },
        { """{ "Engine": { "Accelerator": "Cpu,Cuda" } }""", "Engine:Accelerator", "not one of" }, // Enum.TryParse: 1|2 = OpenCL
        { """{ "Engine": { "Accelerator": "Cpu Cuda" } }""", "Engine:Accelerator", "not one of" },
        { """{ "Logging": { "LogLevel": { "Default": "Debug, Trace" } } }""", "Logging:LogLevel:Default", "not a log level" },
        { """{ "Logging": { "LogLevel": { "Default": 7 } } }""", "Logging:LogLevel:Default", "not a log level" },
        { """{ "Logging": { "LogLevel": { "Default": false } } }""", "Logging:LogLevel:Default", "not a log level" },

        // Huge and negative numbers: out of range, whatever their spelling.
        { """{ "Engine": { "PoolPages": 1e30 } }""", "Engine:PoolPages", "1e30 is out of range (1..2147483647)" },
        { """{ "Engine": { "PoolPages": 99999999999999999999 } }""", "Engine:PoolPages", "99999999999999999999 is out of range" },
        { """{ "Engine": { "PoolPages": -99999999999999999999 } }""", "Engine:PoolPages", "out of range" },
        { """{ "Engine": { "KernelGroups": 1e400 } }""", "Engine:KernelGroups", "out of range (0..65536)" },
        { """{ "Engine": { "KernelGroups": 9223372036854775807 } }""", "Engine:KernelGroups", "out of range" },
        { """{ "Engine": { "PoolPages": -1 } }""", "Engine:PoolPages", "-1 is out of range" },
        { """{ "Engine": { "KernelGroupSize": -1024 } }""", "Engine:KernelGroupSize", "out of range" },
        { """{ "Engine": { "StopPollIntervalMicroseconds": -2147483648 } }""", "Engine:StopPollIntervalMicroseconds", "out of range" },
        { """{ "Engine": { "StopPollIntervalMicroseconds": 1000001 } }""", "Engine:StopPollIntervalMicroseconds", "out of range" },
        { """{ "Engine": { "ResidentBatchOps": -1 } }""", "Engine:ResidentBatchOps", "out of range" },
        { """{ "Engine": { "ResidentBatchOps": 65537 } }""", "Engine:ResidentBatchOps", "out of range" },
        { """{ "Engine": { "ResidentIdleMicroseconds": 0 } }""", "Engine:ResidentIdleMicroseconds", "out of range" },
        { """{ "Engine": { "ResidentIdleMicroseconds": "soon" } }""", "Engine:ResidentIdleMicroseconds", "not a whole number" },
        { """{ "Engine": { "DeviceTimeoutMilliseconds": 0 } }""", "Engine:DeviceTimeoutMilliseconds", "out of range" },
        { """{ "Engine": { "DeviceTimeoutMilliseconds": 3600001 } }""", "Engine:DeviceTimeoutMilliseconds", "out of range" },
        { """{ "Engine": { "DeviceResidentPages": 0 } }""", "Engine:DeviceResidentPages", "out of range (1..16777216)" },
        { """{ "Engine": { "DeviceResidentPages": 16777217 } }""", "Engine:DeviceResidentPages", "out of range" },
        { """{ "Engine": { "PagePlacement": "Resident" } }""", "Engine:PagePlacement", "not one of InPlace, DeviceResident" },
        { """{ "Engine": { "PagePlacement": "1" } }""", "Engine:PagePlacement", "not one of" },

        // Arrays and objects where a value or a section is expected, and null values.
        { """{ "Engine": { "PoolPages": [ 5 ] } }""", "Engine:PoolPages", "must be a single value" },
        { """{ "Engine": { "PoolPages": { "Value": 5 } } }""", "Engine:PoolPages", "must be a single value" },
        { """{ "Engine": { "PoolPages": {} } }""", "Engine:PoolPages", "no value" },
        { """{ "Engine": [ 1, 2 ] }""", "Engine", "must be a section (an object), found an array" },
        { """{ "Logging": [ { "LogLevel": { "Default": "Debug" } } ] }""", "Logging", "found an array" },
        { """{ "Logging": { "LogLevel": [ "Debug" ] } }""", "Logging:LogLevel", "found an array" },
        { """{ "Logging": { "LogLevel": 5 } }""", "Logging:LogLevel", "must be a section" },
        { """{ "Logging": "Debug" }""", "Logging", "must be a section" },
        { """{ "Logging": { "LogLevel": { "GpuExclusive": { "Paging": "Debug" } } } }""", "Logging:LogLevel:GpuExclusive", "must be a single value" },
        { """{ "Engine": { "Accelerator": null } }""", "Engine:Accelerator", "no value" },
        { """{ "Logging": { "LogLevel": { "Default": null } } }""", "Logging:LogLevel:Default", "no value" },

        // Unknown keys, nested and top-level, and deeply nested junk.
        { """{ "Engine": { "PoolPages": 1, "Extra": { "a": { "b": [ 1, { "c": null } ] } } } }""", "Engine:Extra", "unknown key" },
        { """{ "a": { "b": { "c": { "d": { "e": { "f": [ [ [ { "g": null } ] ] ] } } } } } }""", "a", "unknown key" },
        { """{ "Engine": { "PoolPages": 1 }, "Engine2": {} }""", "Engine2", "unknown key" },
        { new string('[', 100) + new string(']', 100), "", "malformed JSON" }, // deeper than the parser's limit of 64

        // Duplicate keys, also differing only in case (keys are case-insensitive).
        { """{ "Engine": { "PoolPages": 12, "PoolPages": 13 } }""", "", "malformed JSON: A duplicate key 'Engine:PoolPages' was found" },
        { """{ "Engine": { "PoolPages": 12, "poolpages": 13 } }""", "", "duplicate key 'Engine:poolpages'" },

        // Not a JSON object at all.
        { "[ 1, 2 ]", "", "malformed JSON" },
        { "null", "", "malformed JSON" },
        { "\"Engine\"", "", "malformed JSON" },
        { "\0\0\0", "", "malformed JSON" },
        { """{ "Engine": { "PoolPages": 12 } } trailing""", "", "malformed JSON" },
        { "   \n\t  ", "", "malformed JSON" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void BadFile_ThrowsConfigurationException_NamingFileAndKey(string content, string key, string problem)
    {
        string file = _temp.Write(content);

        var e = Assert.Throws<ConfigurationException>(() => EngineSettingsLoader.Load(file, null, NoEnvironment));

        Assert.Contains(file, e.Message, StringComparison.Ordinal);
        Assert.Contains(problem, e.Message, StringComparison.Ordinal);
        Assert.Equal(file, e.Origin);
        if (key.Length > 0)
        {
            Assert.Equal(key, e.Key);
            Assert.Contains(key, e.Message, StringComparison.Ordinal);
        }
        else
        {
            Assert.Null(e.Key);
        }
    }

    [Fact]
    public void FileWithAByteOrderMark_IsRead()
    {
        string file = Path.Combine(_temp.Path, "bom.json");
        File.WriteAllBytes(file, [0xEF, 0xBB, 0xBF, .. """{ "Engine": { "PoolPages": 12 } }"""u8]);

        Assert.Equal(12, EngineSettingsLoader.Load(file, null, NoEnvironment).PoolPages);
    }

    [Fact]
    public void FileWithOnlyAByteOrderMark_IsMalformed()
    {
        string file = Path.Combine(_temp.Path, "bom-only.json");
        File.WriteAllBytes(file, [0xEF, 0xBB, 0xBF]);

        var e = Assert.Throws<ConfigurationException>(() => EngineSettingsLoader.Load(file, null, NoEnvironment));

        Assert.Equal(file, e.Origin);
        Assert.StartsWith($"{file}: malformed JSON", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{ "Engine": [] }""")]
    [InlineData("""{ "Engine": {} }""")]
    [InlineData("""{ "Engine": null }""")]
    [InlineData("""{ "Logging": { "LogLevel": {} } }""")]
    public void EmptySection_InAnySpelling_SetsNothing(string content)
    {
        // The configuration layer cannot tell an empty array from an empty object: neither carries a value.
        EngineSettings settings = EngineSettingsLoader.Load(_temp.Write(content), null, NoEnvironment);

        Assert.Equal(EngineSettings.DefaultPoolPages, settings.PoolPages);
        Assert.All(settings.Values, v => Assert.Equal(SettingSource.Default, v.Source));
    }

    [Theory]
    [InlineData("", "''")]
    [InlineData("bad\0name.json", "'bad\\0name.json'")]
    public void InvalidPath_ThrowsConfigurationException_NamingIt(string path, string origin)
    {
        var e = Assert.Throws<ConfigurationException>(() => EngineSettingsLoader.Load(path, null, NoEnvironment));

        Assert.Equal(origin, e.Origin);
        Assert.Null(e.Key);
        Assert.Equal($"{origin}: not a valid file path", e.Message);
    }

    [Fact]
    public void MissingExplicitFile_ThrowsNamingIt()
    {
        string missing = Path.Combine(_temp.Path, "absent.json");

        var e = Assert.Throws<ConfigurationException>(() => EngineSettingsLoader.Load(missing, null, NoEnvironment));

        Assert.Equal($"{missing}: file not found", e.Message);
    }

    [Fact]
    public void DirectoryGivenAsFile_ThrowsCannotRead()
    {
        var e = Assert.Throws<ConfigurationException>(() => EngineSettingsLoader.Load(_temp.Path, null, NoEnvironment));

        Assert.StartsWith($"{_temp.Path}: cannot read the file", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("GPUX_ENGINE__POOLPAGES", "abc", "Engine:PoolPages", "not a whole number")]
    [InlineData("GPUX_ENGINE__ACCELERATOR", "tpu", "Engine:Accelerator", "not one of")]
    [InlineData("GPUX_ENGINE_POOLPAGES", "5", "ENGINE_POOLPAGES", "unknown key")]
    [InlineData("GPUX_ENGINE__POOLPAGES", "", "Engine:PoolPages", "no value")]
    public void BadEnvironmentVariable_ThrowsNamingTheVariableAndKey(string variable, string value, string key, string problem)
    {
        var environment = new Hashtable { [variable] = value };

        var e = Assert.Throws<ConfigurationException>(() => EngineSettingsLoader.Load(null, null, environment));

        Assert.Equal($"environment variable {variable}", e.Origin);
        Assert.Equal(key, e.Key);
        Assert.Contains(variable, e.Message, StringComparison.Ordinal);
        Assert.Contains(problem, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadOverride_ThrowsNamingCommandLine()
    {
        var overrides = new Dictionary<string, string?> { ["Engine:Accelerator"] = "nope" };

        var e = Assert.Throws<ConfigurationException>(() => EngineSettingsLoader.Load(null, overrides, NoEnvironment));

        Assert.Equal("command line", e.Origin);
        Assert.Equal("Engine:Accelerator", e.Key);
    }

    [Fact]
    public void BadFileValue_IsReported_EvenWhenTheEnvironmentOverridesIt()
    {
        // Validation covers every layer, so a typo in the file cannot hide behind an override.
        string file = _temp.Write("""{ "Engine": { "PoolPages": "lots" } }""");
        var environment = new Hashtable { ["GPUX_ENGINE__POOLPAGES"] = "64" };

        var e = Assert.Throws<ConfigurationException>(() => EngineSettingsLoader.Load(file, null, environment));

        Assert.Equal(file, e.Origin);
    }

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "GpuExclusive.sln")))
                return dir.FullName;
        }

        throw new InvalidOperationException("GpuExclusive.sln not found above " + AppContext.BaseDirectory);
    }
}
