using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Herald.Simulators.Apns;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Simulators.Tests.Apns;

/// <summary>The fake APNs doing certificate auth over TLS as Apple does, with certificates made in-process.</summary>
public sealed class FakeApnsCertificateAuthTests : IAsyncLifetime
{
    private const string Topic = "com.example.mail";
    private const string MdmTopic = "com.apple.mgmt.External.4a1b2c3d-0000-4000-8000-00000000abcd";
    private const string Token = FakeApnsHarness.Token;

    private static readonly DateTimeOffset Now = new(DateTime.UtcNow.Date, TimeSpan.Zero);

    private readonly FakeApnsCertificateAuthority _ca = FakeApnsCertificateAuthority.Create();
    private readonly FakeTimeProvider _time = new(Now);
    private FakeApnsServer _server = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _server = await StartAsync(FakeApnsEnvironment.Production, require: false);

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        _ca.Dispose();
    }

    private async Task<FakeApnsServer> StartAsync(FakeApnsEnvironment environment, bool require)
    {
        var options = new FakeApnsServerOptions { UseTls = true, Environment = environment, RequireClientCertificate = require };
        options.ClientCertificateAuthorities.Add(_ca.Certificate);
        return await FakeApnsServer.StartAsync(options, _time, Ct);
    }

    [Fact]
    public async Task ValidCertificate_IsAcceptedWithoutAProviderToken()
    {
        using var certificate = _ca.Issue(Topic);

        var (status, reason) = await SendAsync(_server, certificate, Topic);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Null(reason);
        Assert.Null(Assert.Single(_server.Requests).Authorization);
    }

    [Fact]
    public async Task CertificateOfAnotherAuthority_GetsBadCertificate()
    {
        using var stranger = FakeApnsCertificateAuthority.Create("Not Apple");
        using var certificate = stranger.Issue(Topic);

        Assert.Equal((HttpStatusCode.Forbidden, "BadCertificate"), await SendAsync(_server, certificate, Topic));
    }

    [Fact]
    public async Task ExpiredCertificate_ByTheServersClock_GetsBadCertificate()
    {
        using var certificate = _ca.Issue(Topic, notBefore: Now.AddDays(-30), notAfter: Now.AddDays(2));
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(_server, certificate, Topic)).Status);

        _time.Advance(TimeSpan.FromDays(3));

        Assert.Equal((HttpStatusCode.Forbidden, "BadCertificate"), await SendAsync(_server, certificate, Topic));
    }

    [Fact]
    public async Task RevokedCertificate_GetsBadCertificate()
    {
        using var certificate = _ca.Issue(Topic);
        _server.RevokeCertificate(certificate.Thumbprint);

        Assert.Equal((HttpStatusCode.Forbidden, "BadCertificate"), await SendAsync(_server, certificate, Topic));
    }

    [Fact]
    public async Task DevelopmentCertificate_OnProduction_GetsBadCertificateEnvironment()
    {
        using var certificate = _ca.Issue(Topic, kind: FakeApnsCertificateKind.Development);
        await using var sandbox = await StartAsync(FakeApnsEnvironment.Sandbox, require: false);

        Assert.Equal((HttpStatusCode.Forbidden, "BadCertificateEnvironment"), await SendAsync(_server, certificate, Topic));
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(sandbox, certificate, Topic)).Status);
    }

    [Fact]
    public async Task TopicNotInTheCertificate_GetsTopicDisallowed()
    {
        using var certificate = _ca.Issue(Topic, ["com.example.calendar"]);

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(_server, certificate, "com.example.calendar")).Status);
        Assert.Equal((HttpStatusCode.BadRequest, "TopicDisallowed"), await SendAsync(_server, certificate, "com.example.other"));
    }

    [Fact]
    public async Task NoTopicHeader_SingleTopicCertificate_UsesItsTopic_MultiTopicGetsMissingTopic()
    {
        using var single = _ca.Issue(Topic, kind: FakeApnsCertificateKind.Production);
        using var multi = _ca.Issue(Topic, ["com.example.calendar"]);

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(_server, single, topic: null)).Status);
        Assert.Equal((HttpStatusCode.BadRequest, "MissingTopic"), await SendAsync(_server, multi, topic: null));
    }

    [Fact]
    public async Task PairShapedTopicsExtension_IsUnderstood()
    {
        using var certificate = _ca.Issue(Topic, ["com.example.calendar"], pairShape: true);

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(_server, certificate, "com.example.calendar")).Status);
    }

    [Fact]
    public async Task MdmPush_OverCertificate_ExactPayload_IsAccepted_AnythingElseIsBadPayload()
    {
        using var certificate = _ca.Issue(MdmTopic, kind: FakeApnsCertificateKind.Production);

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(_server, certificate, MdmTopic, "{\"mdm\":\"magic-1\"}", "mdm")).Status);
        Assert.Equal((HttpStatusCode.BadRequest, FakeApnsServer.BadPayloadReason), await SendAsync(_server, certificate, MdmTopic, "{\"mdm\":\"magic-1\",\"aps\":{}}", "mdm"));
        Assert.Equal((HttpStatusCode.BadRequest, FakeApnsServer.BadPayloadReason), await SendAsync(_server, certificate, MdmTopic, "{\"aps\":{\"badge\":1}}", "mdm"));
    }

    [Fact]
    public async Task MdmPush_WithAProviderToken_IsAnInvalidPushType()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var request = h.ValidRequest(payload: "{\"mdm\":\"magic-1\"}");
        request.Headers.Remove("apns-push-type");
        request.Headers.TryAddWithoutValidation("apns-push-type", "mdm");

        var (status, reason, _, _) = await h.SendAsync(request);

        Assert.Equal((HttpStatusCode.BadRequest, "InvalidPushType"), (status, reason));
    }

    [Fact]
    public async Task CertificateAuthListener_WithoutClientCertificate_FailsTheHandshake()
    {
        await using var strict = await StartAsync(FakeApnsEnvironment.Production, require: true);
        using var client = Client(strict, certificate: null);

        await Assert.ThrowsAnyAsync<HttpRequestException>(() => client.SendAsync(Request(strict, Topic, "{\"aps\":{}}", "alert"), Ct));
    }

    [Fact]
    public async Task TokenServerOverTls_StillJudgesTheProviderToken()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { UseTls = true });
        var (status, reason, _, _) = await h.SendAsync(h.ValidRequest(jwt: "not-a-jwt"));

        Assert.Equal((HttpStatusCode.Forbidden, "InvalidProviderToken"), (status, reason));
    }

    [Fact]
    public async Task ExpiredToken_Gets410ExpiredTokenWithTimestamp()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var since = new DateTimeOffset(2025, 5, 1, 0, 0, 0, TimeSpan.Zero);
        h.Server.ExpireToken(FakeApnsHarness.Token, since);

        var (status, reason, timestamp, _) = await h.SendAsync(h.ValidRequest());

        Assert.Equal(HttpStatusCode.Gone, status);
        Assert.Equal("ExpiredToken", reason);
        Assert.Equal(since.ToUnixTimeMilliseconds(), timestamp);
    }

    [Fact]
    public async Task GoAwayEvery_ClosesConnectionsGracefully_AndEveryRequestIsAnswered()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        h.Server.GoAwayEvery(3);
        var answered = 0;
        for (var i = 0; i < 12; i++)
        {
            var (status, _, _, _) = await h.SendAsync(h.ValidRequest());
            answered += status == HttpStatusCode.OK ? 1 : 0;
        }

        Assert.Equal(12, answered);
        Assert.Equal(4, h.Server.GoAwayCount);
    }

    private async Task<(HttpStatusCode Status, string? Reason)> SendAsync(FakeApnsServer server, X509Certificate2? certificate, string? topic, string payload = "{\"aps\":{\"badge\":1}}", string pushType = "alert")
    {
        using var client = Client(server, certificate);
        using var response = await client.SendAsync(Request(server, topic, payload, pushType), Ct);
        var body = await response.Content.ReadAsStringAsync(Ct);
        string? reason = null;
        if (body.Length > 0)
        {
            using var json = System.Text.Json.JsonDocument.Parse(body);
            reason = json.RootElement.GetProperty("reason").GetString();
        }

        return (response.StatusCode, reason);
    }

    private static HttpRequestMessage Request(FakeApnsServer server, string? topic, string payload, string pushType)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, server.BaseUrl + "/3/device/" + Token)
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(Encoding.UTF8.GetBytes(payload)),
        };
        if (topic is not null)
        {
            request.Headers.TryAddWithoutValidation("apns-topic", topic);
        }

        request.Headers.TryAddWithoutValidation("apns-push-type", pushType);
        request.Headers.TryAddWithoutValidation("apns-priority", "10");
        return request;
    }

    private static HttpClient Client(FakeApnsServer server, X509Certificate2? certificate)
    {
        var trusted = server.Certificate!.RawData;
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, c, _, _) => c is not null && c.GetRawCertData().AsSpan().SequenceEqual(trusted);
        if (certificate is not null)
        {
            handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => certificate;
        }

        return new HttpClient(handler);
    }
}
