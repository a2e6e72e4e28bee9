using System.Runtime.CompilerServices;
using Herald.Server.Cli;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// The issue-10 harness runs end to end in a short mode (a few thousand items) and prints its tables. Speeds are
/// never asserted: they are measured by the bench commands on a quiet machine and recorded in docs/BENCHMARKS.md.
/// </summary>
public sealed class BenchHarnessTests
{
    [Fact]
    public async Task DispatchAlone_WithoutWarmUp_TimesAllN_AsTheContractLineSays()
    {
        var output = new StringWriter();
        var result = await BenchCommand.DispatchAsync(null, 2000, null, output, TestContext.Current.CancellationToken);
        var text = output.ToString();
        TestContext.Current.TestOutputHelper?.WriteLine(text);

        // CONTRACT §1: "dispatch: N sent in S s = R/s" with every one of the N inside the timed window.
        Assert.Matches(@"(?m)^dispatch: 2000 sent in [0-9.]+ s = \d+/s \(failed 0, retried 0, dead 0, expired 0\)$", text);
        Assert.Equal(2000, result.Sent);
    }

    [Fact]
    public async Task DispatchWithPeers_ShortRun_EverySenderDrainsTheSameNToTheSameFakeApns()
    {
        var output = new StringWriter();
        var exit = await BenchPeers.RunAsync(3000, appendDocs: false, output, TestContext.Current.CancellationToken, PeersFolder(), warmUp: 500);
        var text = output.ToString();
        TestContext.Current.TestOutputHelper?.WriteLine(text);
        Assert.Contains("each after 500 untimed warm-up sends", text, StringComparison.Ordinal);
        Assert.Matches(@"dispatch: \d+ sent in [0-9.]+ s = \d+/s \(failed 0, retried 0, dead 0, expired 0; timed after \d+ warm-up\)", text);

        Assert.Contains("| sender |", text, StringComparison.Ordinal);
        Assert.Contains("| Herald (durable SQLite queue → dispatcher)", text, StringComparison.Ordinal);
        var missing = new List<string>();
        if (Which("h2load") is null)
        {
            missing.Add("h2load");
        }
        else
        {
            Assert.Contains("| h2load |", text, StringComparison.Ordinal);
        }

        if (Which("node") is null || Which("npm") is null)
        {
            missing.Add("node");
        }
        else
        {
            Assert.Contains("| @parse/node-apn |", text, StringComparison.Ordinal);
            Assert.Contains("| apns2 |", text, StringComparison.Ordinal);
        }

        foreach (var tool in missing)
        {
            // Loud on purpose: without the tool the comparison did not happen.
            TestContext.Current.TestOutputHelper?.WriteLine($"!!! {tool} is not installed here: its peer row was SKIPPED (CI installs it) !!!");
            Assert.Contains("SKIPPED", text, StringComparison.Ordinal);
        }

        Assert.Equal(HeraldCli.Success, exit); // every sender that ran delivered all 3,000, none failed
    }

    [Fact]
    public async Task EndToEnd_ShortRun_PrintsLatencyCpuAndMemory()
    {
        var output = new StringWriter();
        var exit = await BenchE2e.RunAsync([200], TimeSpan.FromSeconds(3), findMax: false, appendDocs: false, output, TestContext.Current.CancellationToken, warmUpTime: TimeSpan.FromSeconds(1));
        var text = output.ToString();
        TestContext.Current.TestOutputHelper?.WriteLine(text);

        Assert.Equal(HeraldCli.Success, exit);
        Assert.Contains("| offered/s | achieved/s |", text, StringComparison.Ordinal);
        Assert.Contains("| 200 |", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Scale_ShortRun_RestartsOnTheLoadedFileAndPrintsStartupMemoryAndLookups()
    {
        var output = new StringWriter();
        var result = await BenchScale.RunAsync(3000, 200, output, TestContext.Current.CancellationToken, warmUp: TimeSpan.FromMilliseconds(200));
        await BenchScale.PrintAsync(result, appendDocs: false, output);
        var text = output.ToString();
        TestContext.Current.TestOutputHelper?.WriteLine(text);

        Assert.Equal(3000, result.Registrations);
        Assert.True(result.RssReady > 0);
        Assert.Contains("| 3,000 |", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ingest_ShortRun_CountsAcknowledgedCallbacksAndRegistrations()
    {
        var output = new StringWriter();
        var results = await BenchIngest.RunAsync(TimeSpan.FromSeconds(2), 16, 1000, output, TestContext.Current.CancellationToken, warmUp: TimeSpan.FromSeconds(1));
        await BenchIngest.PrintAsync(results, appendDocs: false, output);
        TestContext.Current.TestOutputHelper?.WriteLine(output.ToString());

        // With wrk on PATH (test.sh installs it) the child-process row comes first; without it, it is skipped loudly.
        var wrk = Which("wrk") is not null;
        Assert.Equal(wrk ? 3 : 2, results.Count);
        Assert.Contains(wrk ? "from wrk to `herald serve`" : "wrk is not on PATH", output.ToString(), StringComparison.Ordinal);
        Assert.All(results, r => Assert.True(r.Ok > 0, r.What + " acknowledged nothing"));
        Assert.All(results, r => Assert.Equal(0, r.Other));
    }

    private static string PeersFolder([CallerFilePath] string thisFile = "")
        => Path.GetFullPath(Path.Combine(Path.GetDirectoryName(thisFile)!, "..", "..", "bench", "peers"));

    private static string? Which(string name)
        => (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
}
