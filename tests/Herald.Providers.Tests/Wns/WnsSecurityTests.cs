using Herald.Core.Notifications;
using Herald.Providers.Wns;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Herald.Providers.Tests.Wns;

/// <summary>
/// Channel URIs are device input: Herald must never be made to POST (with its WNS bearer token) anywhere but
/// the allowed WNS hosts. Every refusal here is also checked to have sent nothing: no token request, no
/// request to the fake, and no connection to a listening tripwire.
/// </summary>
public sealed class WnsSecurityTests
{
    [Theory]
    [InlineData("http://169.254.169.254/latest/meta-data/iam/security-credentials/", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://169.254.169.254/latest/meta-data/", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://notify.windows.com.evil.com/?token=AwYAAAB", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://evilnotify.windows.com/?token=AwYAAAB", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://notify.windows.com/?token=AwYAAAB", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://db5.notify.windows.com./?token=AwYAAAB", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://user@db5.notify.windows.com/?token=AwYAAAB", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://user:password@db5.notify.windows.com/?token=AwYAAAB", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://evil.com#@db5.notify.windows.com/", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://evil.com?x=.notify.windows.com", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://db5.notify.windows.com:8443/?token=AwYAAAB", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("http://db5.notify.windows.com/?token=AwYAAAB", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("https://db5.nоtify.windows.com/?token=AwYAAAB", WnsReasons.ChannelHostNotAllowed)] // Cyrillic 'о'
    [InlineData("file:///etc/passwd", WnsReasons.ChannelUriInvalid)] // no host
    [InlineData("ftp://db5.notify.windows.com/", WnsReasons.ChannelHostNotAllowed)]
    [InlineData("db5.notify.windows.com/?token=AwYAAAB", WnsReasons.ChannelUriInvalid)]
    [InlineData("/?token=AwYAAAB", WnsReasons.ChannelUriInvalid)]
    [InlineData("", WnsReasons.ChannelUriInvalid)]
    public async Task Send_ChannelOutsideTheAllowList_FailsAndSendsNothing(string channel, string reason)
    {
        await using var h = await WnsTestHarness.StartAsync(o => o.AllowHttpChannels = false);

        var result = await h.SendAsync(h.Notification(channel: channel));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, reason), result);
        Assert.Equal(0, h.Server.TokenRequests);
        Assert.Empty(h.Server.Requests);
    }

    [Fact]
    public async Task Send_OversizedChannelUri_IsRefused()
    {
        await using var h = await WnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(channel: h.Channel + "&pad=" + new string('a', WnsChannelPolicy.MaxChannelUriLength)));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, WnsReasons.ChannelUriInvalid), result);
        Assert.Empty(h.Server.Requests);
    }

    [Theory]
    [InlineData("http://127.0.0.1:{port}/?token=abc")]
    [InlineData("http://localhost:{port}/?token=abc")]
    [InlineData("https://127.0.0.1:{port}/?token=abc")]
    [InlineData("http://127.0.0.1:{port}/latest/meta-data/")]
    [InlineData("http://2130706433:{port}/")] // 127.0.0.1 written as one number
    public async Task Send_LocalListenerNotAllowed_IsNeverContacted(string template)
    {
        using var tripwire = new Tripwire();
        await using var h = await WnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(channel: template.Replace("{port}", tripwire.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, WnsReasons.ChannelHostNotAllowed), result);
        Assert.False(tripwire.Touched);
        Assert.Equal(0, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_AllowListEntryWithoutPort_AllowsOnlyTheDefaultPort()
    {
        using var tripwire = new Tripwire();
        await using var h = await WnsTestHarness.StartAsync(o => o.AllowedChannelHosts = ["127.0.0.1"]);

        var result = await h.SendAsync(h.Notification(channel: $"http://127.0.0.1:{tripwire.Port}/?token=abc"));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, WnsReasons.ChannelHostNotAllowed), result);
        Assert.False(tripwire.Touched);
    }

    [Fact]
    public async Task Send_HttpChannelOfAnAllowedHost_IsRefusedUnlessHttpIsAllowed()
    {
        await using var h = await WnsTestHarness.StartAsync(o => o.AllowHttpChannels = false);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, WnsReasons.ChannelHostNotAllowed), result);
        Assert.Empty(h.Server.Requests);
    }

    [Fact]
    public async Task Send_RedirectToAnotherHost_IsNotFollowed()
    {
        using var tripwire = new Tripwire();
        await using var h = await WnsTestHarness.StartAsync();
        h.Server.Redirect(h.Channel, $"http://127.0.0.1:{tripwire.Port}/latest/meta-data/");

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Failed, 302, WnsReasons.Redirected), result);
        Assert.False(tripwire.Touched);
        Assert.Single(h.Server.Requests);
    }

    [Fact]
    public async Task Send_RedirectToAnAllowedChannel_IsNotFollowedEither()
    {
        await using var h = await WnsTestHarness.StartAsync();
        var other = h.Server.CreateChannel(WnsTestHarness.PackageSid);
        h.Server.Redirect(h.Channel, other);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Failed, 302, WnsReasons.Redirected), result);
        Assert.Single(h.Server.Requests);
    }

    [Fact]
    public async Task Logs_NeverContainChannelUrisOrSecrets()
    {
        var port = ClosedPort.Get();
        var logs = new ListLoggerProvider();
        using var factory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(logs));
        await using var h = await WnsTestHarness.StartAsync(o => o.AllowedChannelHosts.Add($"127.0.0.1:{port}"));
        using var provider = WnsProvider.Create(h.Options, h.Time, factory);
        var dead = $"http://127.0.0.1:{port}/?token=SECRETCHANNELTOKEN1";
        var refused = "https://169.254.169.254/?token=SECRETCHANNELTOKEN2";
        var unknown = h.Server.BaseUrl + "/?token=SECRETCHANNELTOKEN3";
        h.Server.Script(h.Channel, (200, "dropped"), (400, null), (401, null), (401, null));

        var ct = TestContext.Current.CancellationToken;
        foreach (var channel in new[] { h.Channel, h.Channel, h.Channel, dead, refused, unknown, h.Channel })
        {
            await provider.SendAsync(h.Notification(channel: channel), ct);
            h.Time.Advance(TimeSpan.FromSeconds(11)); // past the warning rate limit, so every kind logs in full
        }

        var channelToken = h.Channel[(h.Channel.IndexOf("token=", StringComparison.Ordinal) + 6)..];
        Assert.NotEmpty(logs.Lines);
        Assert.Contains(logs.Lines, l => l.Contains("tok:", StringComparison.Ordinal)); // channels appear as fingerprints
        foreach (var line in logs.Lines)
        {
            Assert.DoesNotContain("SECRETCHANNELTOKEN", line, StringComparison.Ordinal);
            Assert.DoesNotContain(channelToken, line, StringComparison.Ordinal);
            Assert.DoesNotContain(WnsTestHarness.Secret, line, StringComparison.Ordinal);
            Assert.DoesNotContain("Bearer ", line, StringComparison.Ordinal);
        }
    }

    private sealed class ListLoggerProvider : ILoggerProvider
    {
        private readonly List<string> _lines = [];

        public IReadOnlyList<string> Lines
        {
            get
            {
                lock (_lines)
                {
                    return [.. _lines];
                }
            }
        }

        public ILogger CreateLogger(string categoryName) => new ListLogger(this);

        public void Dispose()
        {
        }

        private sealed class ListLogger(ListLoggerProvider owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var line = formatter(state, exception) + (exception is null ? string.Empty : " " + exception);
                lock (owner._lines)
                {
                    owner._lines.Add(line);
                }
            }
        }
    }
}
