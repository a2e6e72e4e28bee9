using System.Buffers.Text;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Herald.Simulators.Apns;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Simulators.Tests.Apns;

/// <summary>Mints ES256 provider tokens the way an APNs client does (and the broken ways tests need).</summary>
internal static class TestJwt
{
    public static string Create(ECDsa key, string keyId, string teamId, DateTimeOffset issuedAt, string alg = "ES256")
    {
        var header = Base64Url.EncodeToString(Encoding.UTF8.GetBytes($"{{\"alg\":\"{alg}\",\"kid\":\"{keyId}\"}}"));
        var claims = Base64Url.EncodeToString(Encoding.UTF8.GetBytes($"{{\"iss\":\"{teamId}\",\"iat\":{issuedAt.ToUnixTimeSeconds()}}}"));
        var input = header + "." + claims;
        var signature = key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return input + "." + Base64Url.EncodeToString(signature);
    }
}

/// <summary>A fake APNs server on a fake clock with one registered key, and an h2c client for it.</summary>
internal sealed class FakeApnsHarness : IAsyncDisposable
{
    public const string TeamId = "TEAM123456";
    public const string KeyId = "KEY1234567";
    public const string Topic = "com.example.mail";
    public const string Token = "8f1c2a9e0b7d4c3f8f1c2a9e0b7d4c3f8f1c2a9e0b7d4c3f8f1c2a9e0b7d4c3f";
    public const string Payload = "{\"aps\":{\"badge\":3}}";

    private FakeApnsHarness(FakeApnsServer server, FakeTimeProvider time, ECDsa key, HttpClient client)
    {
        Server = server;
        Time = time;
        Key = key;
        Client = client;
    }

    public FakeApnsServer Server { get; }
    public FakeTimeProvider Time { get; }
    public ECDsa Key { get; }
    public HttpClient Client { get; }

    public static async Task<FakeApnsHarness> StartAsync(FakeApnsServerOptions? options = null, params string[] topics)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero));
        var server = await FakeApnsServer.StartAsync(options, time, TestContext.Current.CancellationToken);
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        server.AddSigningKey(TeamId, KeyId, key, topics);
        HttpClient client;
        if (server.CertificatePem is null)
        {
            client = new HttpClient(new SocketsHttpHandler());
        }
        else
        {
            var trusted = server.Certificate!.RawData;
            client = new HttpClient(new SocketsHttpHandler
            {
                SslOptions = { RemoteCertificateValidationCallback = (_, c, _, _) => c is not null && c.GetRawCertData().AsSpan().SequenceEqual(trusted) },
            });
        }

        return new FakeApnsHarness(server, time, key, client);
    }

    /// <summary>A new provider token. The fake, like APNs, limits how often a key presents new tokens: reuse <see cref="DefaultJwt"/>.</summary>
    public string Jwt(DateTimeOffset? issuedAt = null) => TestJwt.Create(Key, KeyId, TeamId, issuedAt ?? Time.GetUtcNow());

    /// <summary>The token requests carry unless a test passes its own.</summary>
    public string DefaultJwt => _defaultJwt ??= Jwt();

    private string? _defaultJwt;

    /// <summary>A valid badge push request; tests then break one thing.</summary>
    public HttpRequestMessage ValidRequest(string? token = Token, string? payload = Payload, string? jwt = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, Server.BaseUrl + "/3/device/" + token)
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(Encoding.UTF8.GetBytes(payload ?? string.Empty)),
        };
        request.Headers.TryAddWithoutValidation("authorization", "bearer " + (jwt ?? DefaultJwt));
        request.Headers.TryAddWithoutValidation("apns-topic", Topic);
        request.Headers.TryAddWithoutValidation("apns-push-type", "alert");
        request.Headers.TryAddWithoutValidation("apns-priority", "10");
        request.Headers.TryAddWithoutValidation("apns-id", "6f1d9c1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f");
        return request;
    }

    public async Task<(HttpStatusCode Status, string? Reason, long? Timestamp, HttpResponseHeaders Headers)> SendAsync(HttpRequestMessage request)
    {
        using (request)
        {
            using var response = await Client.SendAsync(request, TestContext.Current.CancellationToken);
            var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            string? reason = null;
            long? timestamp = null;
            if (body.Length > 0)
            {
                using var json = System.Text.Json.JsonDocument.Parse(body);
                reason = json.RootElement.GetProperty("reason").GetString();
                if (json.RootElement.TryGetProperty("timestamp", out var ts))
                {
                    timestamp = ts.GetInt64();
                }
            }

            return (response.StatusCode, reason, timestamp, response.Headers);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
        Key.Dispose();
    }
}
