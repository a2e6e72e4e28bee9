using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Providers.Wns;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Xunit;

namespace Herald.Providers.Tests.Wns;

public sealed class WnsChannelPolicyTests
{
    private static readonly WnsChannelPolicy Default = new(WnsOptions.DefaultAllowedChannelHosts, allowHttp: false);

    [Theory]
    [InlineData("https://db5.notify.windows.com/?token=AwYAAAB", WnsChannelVerdict.Allowed)]
    [InlineData("https://DB5.Notify.Windows.COM/?token=AwYAAAB", WnsChannelVerdict.Allowed)]
    [InlineData("https://wns2-by3p.notify.windows.com/w/?token=BQYAAAB", WnsChannelVerdict.Allowed)]
    [InlineData("https://a.b.notify.windows.com/?token=x", WnsChannelVerdict.Allowed)]
    [InlineData("https://db5.notify.windows.com:443/?token=x", WnsChannelVerdict.Allowed)]
    [InlineData("https://notify.windows.com/?token=x", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("https://notify.windows.com.evil.com/?token=x", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("https://db5.notify.windows.com.evil.com/?token=x", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("https://evilnotify.windows.com/?token=x", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("https://db5.notify.windows.com./?token=x", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("https://db5.nоtify.windows.com/?token=x", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("https://169.254.169.254/", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("https://evil.com#@db5.notify.windows.com/", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("https://db5.notify.windows.com:8443/?token=x", WnsChannelVerdict.PortNotAllowed)]
    [InlineData("http://db5.notify.windows.com/?token=x", WnsChannelVerdict.SchemeNotAllowed)]
    [InlineData("ftp://db5.notify.windows.com/", WnsChannelVerdict.SchemeNotAllowed)]
    [InlineData("wss://db5.notify.windows.com/", WnsChannelVerdict.SchemeNotAllowed)]
    [InlineData("https://user@db5.notify.windows.com/?token=x", WnsChannelVerdict.UserInfoNotAllowed)]
    [InlineData("https://user:pw@db5.notify.windows.com/?token=x", WnsChannelVerdict.UserInfoNotAllowed)]
    [InlineData("https://db5.notify.windows.com\\@evil.com/", WnsChannelVerdict.Malformed)]
    [InlineData("db5.notify.windows.com/?token=x", WnsChannelVerdict.Malformed)]
    [InlineData("", WnsChannelVerdict.Malformed)]
    [InlineData(null, WnsChannelVerdict.Malformed)]
    public void Check_DefaultAllowList(string? channel, WnsChannelVerdict expected)
    {
        var verdict = Default.Check(channel, out var uri);

        Assert.Equal(expected, verdict);
        Assert.Equal(expected == WnsChannelVerdict.Allowed, uri is not null);
    }

    [Fact]
    public void Check_ReturnsTheUriThatWasChecked()
    {
        Default.Check("https://DB5.notify.windows.com/?token=AwYAAAB%2b", out var uri);

        Assert.NotNull(uri);
        Assert.Equal("db5.notify.windows.com", uri.IdnHost);
        Assert.Equal("?token=AwYAAAB%2b", uri.Query);
    }

    [Theory]
    [InlineData("127.0.0.1:5000", "http://127.0.0.1:5000/?token=x", WnsChannelVerdict.Allowed)]
    [InlineData("127.0.0.1:5000", "http://127.0.0.1:5001/?token=x", WnsChannelVerdict.PortNotAllowed)]
    [InlineData("127.0.0.1:5000", "http://127.0.0.1/?token=x", WnsChannelVerdict.PortNotAllowed)]
    [InlineData("127.0.0.1:5000", "http://localhost:5000/?token=x", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("127.0.0.1", "https://127.0.0.1/?token=x", WnsChannelVerdict.Allowed)]
    [InlineData("127.0.0.1", "http://127.0.0.1/?token=x", WnsChannelVerdict.Allowed)]
    [InlineData("127.0.0.1", "https://127.0.0.1:5000/?token=x", WnsChannelVerdict.PortNotAllowed)]
    [InlineData("127.0.0.1:*", "http://127.0.0.1:5000/?token=x", WnsChannelVerdict.Allowed)]
    [InlineData("127.0.0.1:*", "https://127.0.0.1/?token=x", WnsChannelVerdict.Allowed)]
    [InlineData("[::1]:5000", "http://[::1]:5000/?token=x", WnsChannelVerdict.Allowed)]
    [InlineData("[::1]:5000", "http://[0:0::1]:5000/?token=x", WnsChannelVerdict.Allowed)]
    [InlineData("[::1]:5000", "http://127.0.0.1:5000/?token=x", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("*.example.com:8443", "https://push.example.com:8443/", WnsChannelVerdict.Allowed)]
    [InlineData("*.example.com:8443", "https://push.example.com/", WnsChannelVerdict.PortNotAllowed)]
    [InlineData("push.example.com", "https://push.example.com/", WnsChannelVerdict.Allowed)]
    [InlineData("push.example.com", "https://a.push.example.com/", WnsChannelVerdict.HostNotAllowed)]
    [InlineData("*.EXAMPLE.com", "https://push.example.COM/", WnsChannelVerdict.Allowed)]
    public void Check_CustomEntries(string entry, string channel, WnsChannelVerdict expected)
    {
        var policy = new WnsChannelPolicy([entry], allowHttp: true);

        Assert.Equal(expected, policy.Check(channel, out _));
    }

    [Fact]
    public void Check_LongUri_IsMalformed()
    {
        var channel = "https://db5.notify.windows.com/?token=" + new string('a', WnsChannelPolicy.MaxChannelUriLength);

        Assert.Equal(WnsChannelVerdict.Malformed, Default.Check(channel, out _));
    }

    [Fact]
    public void Check_EmptyAllowList_AllowsNothing()
    {
        var policy = new WnsChannelPolicy([], allowHttp: true);

        Assert.Equal(WnsChannelVerdict.HostNotAllowed, policy.Check("https://db5.notify.windows.com/", out _));
    }

    [Theory]
    [InlineData("*.notify.windows.com", "*.notify.windows.com")]
    [InlineData(" *.Notify.Windows.COM ", "*.notify.windows.com")]
    [InlineData("127.0.0.1:8080", "127.0.0.1:8080")]
    [InlineData("localhost:*", "localhost:*")]
    [InlineData("[0:0::1]:5000", "[::1]:5000")]
    [InlineData("xn--bcher-kva.example", "xn--bcher-kva.example")]
    public void TryParseEntry_Valid_IsNormalized(string entry, string normalized)
    {
        Assert.True(WnsChannelPolicy.TryParseEntry(entry, out var actual, out var error), error);
        Assert.Equal(normalized, actual);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData(null)]
    [InlineData("*")]
    [InlineData("*.com")]
    [InlineData("a*.notify.windows.com")]
    [InlineData("*.*.windows.com")]
    [InlineData("db5.notify.windows.com:0")]
    [InlineData("db5.notify.windows.com:70000")]
    [InlineData("db5.notify.windows.com:https")]
    [InlineData("https://db5.notify.windows.com")]
    [InlineData("db5.notify.windows.com/path")]
    [InlineData("user@db5.notify.windows.com")]
    [InlineData("ex ample.com")]
    [InlineData("bücher.example")]
    [InlineData("[::1")]
    [InlineData("[::1]x")]
    [InlineData("*.[::1]")]
    public void TryParseEntry_Invalid_IsRefusedWithAReason(string? entry)
    {
        Assert.False(WnsChannelPolicy.TryParseEntry(entry, out _, out var error));
        Assert.False(string.IsNullOrWhiteSpace(error));
    }

    [Fact]
    public void Constructor_InvalidEntry_Throws()
    {
        var ex = Assert.Throws<ArgumentException>(() => new WnsChannelPolicy(["*"], allowHttp: false));
        Assert.Contains("'*'", ex.Message, StringComparison.Ordinal);
    }
}

public sealed class WnsOptionsTests
{
    [Fact]
    public void Defaults_AreValid_AndAllowOnlyWnsHosts()
    {
        var options = new WnsOptions();

        Assert.Empty(WnsOptions.Validate(options));
        Assert.Equal("https://login.live.com/accesstoken.srf", options.TokenUrl);
        Assert.Equal(["*.notify.windows.com"], options.EffectiveAllowedChannelHosts);
        Assert.False(options.AllowHttpChannels);
        Assert.Equal(TimeSpan.FromSeconds(60), options.IdleTimeout);
        Assert.False(options.HasCredential);
    }

    [Fact]
    public void ConfiguredAllowList_ReplacesTheDefault()
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Herald:Wns:AllowedChannelHosts:0"] = "127.0.0.1:5000",
                ["Herald:Wns:PackageSid"] = "ms-app://s-1-15-2-1",
                ["Herald:Wns:ClientSecret"] = "secret",
            })
            .Build();
        var options = new WnsOptions();

        configuration.GetSection(WnsOptions.SectionName).Bind(options);

        Assert.Equal(["127.0.0.1:5000"], options.EffectiveAllowedChannelHosts);
        Assert.Empty(WnsOptions.Validate(options));
    }

    [Theory]
    [InlineData("ms-app://s-1-15-2-1", null, "ClientSecret")]
    [InlineData(null, "secret", "PackageSid")]
    [InlineData("  ", "secret", "PackageSid")]
    public void HalfACredential_IsInvalid(string? sid, string? secret, string missing)
    {
        var errors = WnsOptions.Validate(new WnsOptions { PackageSid = sid, ClientSecret = secret });

        Assert.Contains(errors, e => e.Contains("Herald:Wns:" + missing, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("http://login.live.com/accesstoken.srf")]
    [InlineData("http://10.0.0.5/accesstoken.srf")]
    [InlineData("ftp://login.live.com/")]
    [InlineData("login.live.com/accesstoken.srf")]
    [InlineData("")]
    [InlineData("https://user:pw@login.live.com/accesstoken.srf")]
    public void TokenUrl_MustBeHttpsUnlessLoopback(string url)
    {
        var errors = WnsOptions.Validate(new WnsOptions { TokenUrl = url });

        Assert.Contains(errors, e => e.Contains("Herald:Wns:TokenUrl", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("http://127.0.0.1:5000/accesstoken.srf")]
    [InlineData("http://localhost:5000/accesstoken.srf")]
    [InlineData("http://[::1]:5000/accesstoken.srf")]
    public void TokenUrl_HttpOnLoopback_IsValid(string url)
    {
        Assert.Empty(WnsOptions.Validate(new WnsOptions { TokenUrl = url }));
    }

    [Fact]
    public void BadValues_AreEachReported()
    {
        var errors = WnsOptions.Validate(new WnsOptions
        {
            AllowedChannelHosts = ["*.com", "db5.notify.windows.com:0"],
            ConnectTimeout = TimeSpan.Zero,
            IdleTimeout = TimeSpan.FromSeconds(-1),
            RequestTimeout = TimeSpan.Zero,
            ConnectionLifetime = TimeSpan.Zero,
            MaxConnectionsPerHost = 0,
            TokenRefreshMargin = TimeSpan.FromSeconds(-1),
            TokenFailureBackoff = TimeSpan.FromSeconds(-1),
            TrustedCertificateFile = "/nonexistent/wns.pem",
        });

        Assert.Contains(errors, e => e.Contains("'*.com'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("'db5.notify.windows.com:0'", StringComparison.Ordinal));
        foreach (var name in new[] { "ConnectTimeout", "IdleTimeout", "RequestTimeout", "ConnectionLifetime", "MaxConnectionsPerHost", "TokenRefreshMargin", "TokenFailureBackoff", "TrustedCertificateFile" })
        {
            Assert.Contains(errors, e => e.Contains("Herald:Wns:" + name, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Validator_ReportsFailures()
    {
        var result = new WnsOptionsValidator().Validate(null, new WnsOptions { PackageSid = "ms-app://x" });

        Assert.True(result.Failed);
    }
}

public sealed class WnsPayloadTests
{
    [Theory]
    [InlineData("inbox", "inbox")]
    [InlineData("A1b2C3d4E5f6G7h8", "A1b2C3d4E5f6G7h8")]
    public void Tag_ShortAlphanumeric_IsKept(string collapseId, string expected)
    {
        Assert.Equal(expected, WnsPayload.Tag(collapseId));
    }

    [Theory]
    [InlineData("A1b2C3d4E5f6G7h8X")]
    [InlineData("in-box")]
    [InlineData("")]
    [InlineData("ünï")]
    public void Tag_Otherwise_IsSixteenHexDigitsAndStable(string collapseId)
    {
        var tag = WnsPayload.Tag(collapseId);

        Assert.Equal(16, tag.Length);
        Assert.All(tag, c => Assert.True(char.IsAsciiHexDigitLower(c) || char.IsAsciiDigit(c)));
        Assert.Equal(tag, WnsPayload.Tag(collapseId));
    }

    [Fact]
    public void Build_Kinds_HaveTheirTypeAndContentType()
    {
        Assert.Equal(("wns/badge", "text/xml"), Pick(WnsPayload.Build(new NotificationContent { Kind = PushKind.Badge })));
        Assert.Equal(("wns/toast", "text/xml"), Pick(WnsPayload.Build(new NotificationContent { Kind = PushKind.Alert })));
        Assert.Equal(("wns/raw", "application/octet-stream"), Pick(WnsPayload.Build(new NotificationContent { Kind = PushKind.Background })));
        Assert.Throws<ArgumentOutOfRangeException>(() => WnsPayload.Build(new NotificationContent { Kind = PushKind.Mdm }));

        static (string, string) Pick(WnsMessage m) => (m.Type, m.ContentType);
    }

    [Fact]
    public void Sanitize_KeepsValidTextAndReplacesWhatXmlCannotCarry()
    {
        Assert.Equal("plain 😀 \t\r\n", WnsPayload.Sanitize("plain 😀 \t\r\n"));
        Assert.Equal("a\uFFFDb\uFFFD\uFFFD", WnsPayload.Sanitize("a\u0000b\uDC00\uFFFE"));
    }
}

public sealed class WnsReasonsTests
{
    [Theory]
    [InlineData(200, null, PushOutcome.Sent, null)]
    [InlineData(200, "received", PushOutcome.Sent, null)]
    [InlineData(200, "Received", PushOutcome.Sent, null)]
    [InlineData(200, "something-new", PushOutcome.Sent, null)]
    [InlineData(200, "Dropped", PushOutcome.Sent, WnsReasons.Dropped)]
    [InlineData(200, "channelThrottled", PushOutcome.Retry, WnsReasons.ChannelThrottled)]
    [InlineData(301, null, PushOutcome.Failed, WnsReasons.Redirected)]
    [InlineData(307, null, PushOutcome.Failed, WnsReasons.Redirected)]
    [InlineData(401, null, PushOutcome.CredentialFault, WnsReasons.Unauthorized)]
    [InlineData(418, null, PushOutcome.Failed, WnsReasons.UnexpectedStatus)]
    [InlineData(502, null, PushOutcome.Retry, WnsReasons.ServerError)]
    [InlineData(204, null, PushOutcome.Failed, WnsReasons.UnexpectedStatus)]
    public void Map_Statuses(int status, string? notificationStatus, PushOutcome outcome, string? reason)
    {
        var result = WnsReasons.Map(status, notificationStatus, TimeSpan.FromSeconds(5));

        Assert.Equal(outcome, result.Outcome);
        Assert.Equal(reason, result.Reason);
        Assert.Equal(status, result.StatusCode);
        Assert.Equal(outcome == PushOutcome.Retry ? TimeSpan.FromSeconds(5) : null, result.RetryAfter);
    }
}

public sealed class WnsServiceCollectionTests
{
    [Fact]
    public void AddWnsProvider_RegistersAWnsPushProvider()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddWnsProvider().Configure(o =>
        {
            o.PackageSid = "ms-app://s-1-15-2-1";
            o.ClientSecret = "secret";
        });
        using var provider = services.BuildServiceProvider();

        var push = Assert.Single(provider.GetServices<IPushProvider>());

        Assert.Equal(Platform.Wns, push.Platform);
        Assert.Same(provider.GetRequiredService<WnsProvider>(), push);
        Assert.IsType<WnsTokenCache>(provider.GetRequiredService<IWnsTokenCache>());
        Assert.IsType<OptionsWnsCredentialSource>(provider.GetRequiredService<IWnsCredentialSource>());
    }

    [Fact]
    public void AddWnsProvider_InvalidOptions_FailValidation()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddWnsProvider().Configure(o => o.AllowedChannelHosts = ["*"]);
        using var provider = services.BuildServiceProvider();

        var ex = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<WnsOptions>>().Value);

        Assert.Contains(ex.Failures, f => f.Contains("AllowedChannelHosts", StringComparison.Ordinal));
    }

    [Fact]
    public void AddWnsProvider_KeepsACredentialSourceRegisteredFirst()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        var custom = new FixedSource();
        services.AddSingleton<IWnsCredentialSource>(custom);
        services.AddWnsProvider();
        using var provider = services.BuildServiceProvider();

        Assert.Same(custom, provider.GetRequiredService<IWnsCredentialSource>());
    }

    private sealed class FixedSource : IWnsCredentialSource
    {
        public WnsCredential? Find(string tenantId, string topic) => null;
    }
}

public sealed class WnsCredentialTests
{
    [Fact]
    public void Credential_IdSeparatesSecretsAndNameHidesThem()
    {
        var a = new WnsCredential("ms-app://s-1", "secret-a");
        var b = new WnsCredential("ms-app://s-1", "secret-b");

        Assert.NotEqual(a.Id, b.Id);
        Assert.Equal("wns:ms-app://s-1", a.Name);
        Assert.DoesNotContain("secret", a.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("secret", a.Id, StringComparison.Ordinal);
    }

    [Fact]
    public void OptionsSource_WithoutCredential_FindsNone()
    {
        var source = new OptionsWnsCredentialSource(Options.Create(new WnsOptions()));

        Assert.Null(source.Find("t", "topic"));
    }
}
