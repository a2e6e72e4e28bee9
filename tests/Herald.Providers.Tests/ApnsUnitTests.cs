using System.Text;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Providers.Apns;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Providers.Tests;

public sealed class ApnsTokenCacheTests
{
    private static readonly FakeTimeProvider Clock = new(new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero));

    private static ApnsSigningKey NewKey()
    {
        using var ec = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        return ApnsSigningKey.FromPem("TEAM123456", "KEY1234567", ec.ExportPkcs8PrivateKeyPem());
    }

    private static (ApnsTokenCache Cache, FakeTimeProvider Time) NewCache(TimeSpan? refresh = null)
    {
        var time = new FakeTimeProvider(Clock.GetUtcNow());
        return (new ApnsTokenCache(time, Options.Create(new ApnsOptions { TokenRefreshInterval = refresh ?? TimeSpan.FromMinutes(40) })), time);
    }

    [Fact]
    public async Task GetAsync_ReturnsTheSameTokenUntilRefreshAge()
    {
        using var key = NewKey();
        var (cache, time) = NewCache();

        var first = await cache.GetAsync(key, TestContext.Current.CancellationToken);
        time.Advance(TimeSpan.FromMinutes(39));
        var second = await cache.GetAsync(key, TestContext.Current.CancellationToken);
        time.Advance(TimeSpan.FromMinutes(1));
        var third = await cache.GetAsync(key, TestContext.Current.CancellationToken);

        Assert.Same(first, second);
        Assert.NotSame(second, third);
        Assert.Equal(time.GetUtcNow(), third.IssuedAt);
        Assert.Equal("bearer " + third.Jwt, third.Authorization);
    }

    [Fact]
    public async Task GetAsync_FromManyThreads_MintsOnce()
    {
        using var key = NewKey();
        var (cache, _) = NewCache();

        var tokens = await Task.WhenAll(Enumerable.Range(0, 64).Select(_ => Task.Run(async () => await cache.GetAsync(key, CancellationToken.None))));

        Assert.Single(tokens.Distinct());
        Assert.Equal(1, cache.MintCount);
    }

    [Fact]
    public async Task RenewExpiredAsync_OnlyReplacesTheCurrentToken()
    {
        using var key = NewKey();
        var (cache, _) = NewCache();
        var ct = TestContext.Current.CancellationToken;
        var rejected = await cache.GetAsync(key, ct);

        var renewed = await cache.RenewExpiredAsync(key, rejected, ct);
        var renewedAgainForTheSameRejection = await cache.RenewExpiredAsync(key, rejected, ct);

        Assert.NotSame(rejected, renewed);
        Assert.Same(renewed, renewedAgainForTheSameRejection);
        Assert.Same(renewed, await cache.GetAsync(key, ct));
        Assert.Equal(2, cache.MintCount);
    }

    [Fact]
    public async Task ReportTooManyUpdates_SuspendsRenewalFor20Minutes()
    {
        using var key = NewKey();
        var (cache, time) = NewCache();
        var ct = TestContext.Current.CancellationToken;
        var current = await cache.GetAsync(key, ct);

        await cache.ReportTooManyUpdatesAsync(key, ct);
        var during = await cache.RenewExpiredAsync(key, current, ct);
        time.Advance(TimeSpan.FromMinutes(20));
        var after = await cache.RenewExpiredAsync(key, current, ct);

        Assert.Same(current, during);
        Assert.NotSame(current, after);
    }

    [Fact]
    public async Task ReportTooManyUpdates_KeepsTheTokenPastRefreshAgeUntilTheBackoffEnds()
    {
        using var key = NewKey();
        var (cache, time) = NewCache();
        var ct = TestContext.Current.CancellationToken;
        var current = await cache.GetAsync(key, ct);
        time.Advance(TimeSpan.FromMinutes(30));

        await cache.ReportTooManyUpdatesAsync(key, ct);
        time.Advance(TimeSpan.FromMinutes(19)); // 49 minutes old, backoff until minute 50
        var during = await cache.GetAsync(key, ct);
        time.Advance(TimeSpan.FromMinutes(1));
        var after = await cache.GetAsync(key, ct);

        Assert.Same(current, during);
        Assert.NotSame(current, after);
    }

    [Fact]
    public async Task Constructor_ClampsTheRefreshIntervalTo20To55Minutes()
    {
        using var key = NewKey();
        var (cache, time) = NewCache(TimeSpan.FromMinutes(5));
        var ct = TestContext.Current.CancellationToken;
        var first = await cache.GetAsync(key, ct);

        time.Advance(TimeSpan.FromMinutes(19));
        var at19 = await cache.GetAsync(key, ct);
        time.Advance(TimeSpan.FromMinutes(1));
        var at20 = await cache.GetAsync(key, ct);

        Assert.Same(first, at19);
        Assert.NotSame(first, at20);
    }

    [Fact]
    public void FromPem_RejectsKeysThatAreNotP256Pem()
    {
        using var p384 = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP384);

        Assert.Throws<ArgumentException>(() => ApnsSigningKey.FromPem("TEAM123456", "KEY1234567", p384.ExportPkcs8PrivateKeyPem()));
        Assert.Throws<ArgumentException>(() => ApnsSigningKey.FromPem("TEAM123456", "KEY1234567", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"));
    }
}

public sealed class ApnsResponseTests
{
    [Fact]
    public void ParseError_ReadsReasonAndTimestamp()
    {
        ApnsReasons.ParseError("{\"reason\":\"Unregistered\",\"timestamp\":1748608496789}"u8, out var reason, out var timestamp);

        Assert.Same(ApnsReasons.Unregistered, reason);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(1748608496789), timestamp);
    }

    [Fact]
    public void ParseError_UnknownReason_IsKeptAsText()
    {
        ApnsReasons.ParseError("{\"extra\":{\"a\":[1]},\"reason\":\"BrandNew\"}"u8, out var reason, out var timestamp);

        Assert.Equal("BrandNew", reason);
        Assert.Null(timestamp);
    }

    [Theory]
    [InlineData("")]
    [InlineData("<html>502</html>")]
    [InlineData("{\"reason\":")]
    [InlineData("[]")]
    public void ParseError_ForeignBody_GivesNoReason(string body)
    {
        ApnsReasons.ParseError(Encoding.UTF8.GetBytes(body), out var reason, out var timestamp);

        Assert.Null(reason);
        Assert.Null(timestamp);
    }

    [Fact]
    public void Map_403WithUnknownReason_IsACredentialFault()
        => Assert.Equal(PushOutcome.CredentialFault, ApnsProvider.Map(403, "UnrelatedKeyIdInToken", null, null).Outcome);

    [Fact]
    public void Map_TimestampOnlyForTokenInvalid()
    {
        var at = DateTimeOffset.FromUnixTimeMilliseconds(1);

        Assert.Equal(at, ApnsProvider.Map(410, null, null, at).TokenInvalidSince);
        Assert.Null(ApnsProvider.Map(503, null, null, at).TokenInvalidSince);
    }
}

public sealed class ApnsOptionsTests
{
    [Fact]
    public void Validate_Defaults_AreValidWithoutCredential()
    {
        var options = new ApnsOptions();

        Assert.Empty(ApnsOptions.Validate(options));
        Assert.Equal("https://api.push.apple.com", options.ProductionUrl);
        Assert.Equal("https://api.sandbox.push.apple.com", options.SandboxUrl);
        Assert.Equal(TimeSpan.FromSeconds(10), options.ConnectTimeout);
        Assert.Equal(TimeSpan.FromSeconds(60), options.IdleTimeout);
        Assert.Equal(TimeSpan.FromSeconds(30), options.RequestTimeout);
        Assert.Equal(TimeSpan.FromMinutes(40), options.TokenRefreshInterval);
    }

    [Fact]
    public void Validate_PartialCredential_NamesWhatIsMissing()
    {
        var errors = ApnsOptions.Validate(new ApnsOptions { TeamId = "TEAM123456" });

        Assert.Contains(errors, e => e.Contains("KeyId", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("PrivateKeyFile", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_MissingKeyFile_IsReported()
    {
        var errors = ApnsOptions.Validate(new ApnsOptions { TeamId = "TEAM123456", KeyId = "KEY1234567", PrivateKeyFile = "/nonexistent/AuthKey.p8" });

        Assert.Contains(errors, e => e.Contains("/nonexistent/AuthKey.p8", StringComparison.Ordinal) && e.Contains("does not exist", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("ftp://api.push.apple.com")]
    [InlineData("api.push.apple.com")]
    [InlineData("")]
    public void Validate_BadUrl_IsReported(string url)
        => Assert.Contains(ApnsOptions.Validate(new ApnsOptions { ProductionUrl = url }), e => e.Contains("ProductionUrl", StringComparison.Ordinal));

    [Theory]
    [InlineData(19)]
    [InlineData(56)]
    public void Validate_RefreshIntervalOutside20To55Minutes_IsReported(int minutes)
        => Assert.Contains(ApnsOptions.Validate(new ApnsOptions { TokenRefreshInterval = TimeSpan.FromMinutes(minutes) }), e => e.Contains("TokenRefreshInterval", StringComparison.Ordinal));

    [Fact]
    public void Validate_NonPositiveTimeouts_AreReported()
    {
        var errors = ApnsOptions.Validate(new ApnsOptions { ConnectTimeout = TimeSpan.Zero, RequestTimeout = TimeSpan.FromSeconds(-1) });

        Assert.Equal(2, errors.Count);
    }

    [Fact]
    public void Validator_ReturnsFailureWithMessages()
    {
        var result = new ApnsOptionsValidator().Validate(null, new ApnsOptions { SandboxUrl = "nope" });

        Assert.True(result.Failed);
        Assert.Contains("SandboxUrl", result.FailureMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void Provider_WithInvalidOptions_Throws()
        => Assert.Throws<OptionsValidationException>(() => ApnsProvider.Create(new ApnsOptions { ProductionUrl = "nope" }));

    [Fact]
    public void AddApnsProvider_RegistersTheProviderAsIPushProvider()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddApnsProvider().Configure(o => o.Topic = "com.example.mail").ValidateOnStart();
        using var provider = services.BuildServiceProvider();

        var push = Assert.Single(provider.GetServices<IPushProvider>());

        Assert.IsType<ApnsProvider>(push);
        Assert.Same(push, provider.GetRequiredService<ApnsProvider>());
    }
}
