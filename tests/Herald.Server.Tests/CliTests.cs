using Herald.Server.Cli;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>The CLI verbs run end to end in a short mode (the speed itself is measured by benchmarks, not here).</summary>
public sealed class CliTests
{
    [Fact]
    public async Task Demo_ShortRun_ExitsZeroBecauseEveryExpectedPushArrived()
        => Assert.Equal(HeraldCli.Success, await HeraldCli.RunAsync(["demo", "--devices", "40", "--rate", "80", "--duration", "2s"]));

    [Fact]
    public async Task BenchDispatch_ShortRun_DrainsEveryNotificationToTheFakeApns()
        => Assert.Equal(HeraldCli.Success, await HeraldCli.RunAsync(["bench", "dispatch", "--count", "2000"]));

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("demo", "--devices", "0")]
    [InlineData("demo", "--duration", "soon")]
    public async Task BadArguments_ExitTwo(params string[] args)
        => Assert.Equal(HeraldCli.UsageError, await HeraldCli.RunAsync(args));
}
