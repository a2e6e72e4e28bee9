using System.Buffers.Text;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Herald.Simulators.Fcm;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Simulators.Tests.Fcm;

/// <summary>Signs RS256 JWT-bearer assertions the way a Google client does (and the broken ways tests need).</summary>
internal static class TestAssertion
{
    public static string Create(RSA key, string? kid, string iss, string aud, string? scope, long iat, long exp, string alg = "RS256")
    {
        var header = new Dictionary<string, object?> { ["alg"] = alg, ["typ"] = "JWT" };
        if (kid is not null)
        {
            header["kid"] = kid;
        }

        var claims = new Dictionary<string, object?> { ["iss"] = iss, ["aud"] = aud, ["iat"] = iat, ["exp"] = exp };
        if (scope is not null)
        {
            claims["scope"] = scope;
        }

        var input = Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(header)) + "." + Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(claims));
        var signature = key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return input + "." + Base64Url.EncodeToString(signature);
    }
}

/// <summary>What the fake answered: the status plus the parts of Google's error JSON.</summary>
internal sealed record FcmAnswer(int Status, string Raw, string? ErrorStatus, string? ErrorCode, string? InfoReason, string? Message, string? Name, TimeSpan? RetryAfter, Version Version);

/// <summary>A fake FCM server on a fake clock with one service account, and an HTTP/2 client for it.</summary>
internal sealed class FakeFcmHarness : IAsyncDisposable
{
    public const string Project = "herald-test";
    public const string Token = "dGVzdC10b2tlbi0x:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx";

    private string? _accessToken;

    private FakeFcmHarness(FakeFcmServer server, FakeTimeProvider time, HttpClient client, string accountJson)
    {
        Server = server;
        Time = time;
        Client = client;
        AccountJson = accountJson;
        using var document = JsonDocument.Parse(accountJson);
        ClientEmail = document.RootElement.GetProperty("client_email").GetString()!;
        KeyId = document.RootElement.GetProperty("private_key_id").GetString()!;
        Key = RSA.Create();
        Key.ImportFromPem(document.RootElement.GetProperty("private_key").GetString());
    }

    public FakeFcmServer Server { get; }
    public FakeTimeProvider Time { get; }
    public HttpClient Client { get; }
    public string AccountJson { get; }
    public string ClientEmail { get; }
    public string KeyId { get; }
    public RSA Key { get; }

    public long Now => Time.GetUtcNow().ToUnixTimeSeconds();

    public static async Task<FakeFcmHarness> StartAsync(FakeFcmServerOptions? options = null)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero));
        var server = await FakeFcmServer.StartAsync(options, time, TestContext.Current.CancellationToken);
        var json = server.CreateServiceAccount(Project);
        var handler = new SocketsHttpHandler();
        if (server.Certificate is { } certificate)
        {
            var trusted = certificate.RawData;
            handler.SslOptions.RemoteCertificateValidationCallback = (_, c, _, _) => c is not null && c.GetRawCertData().AsSpan().SequenceEqual(trusted);
        }

        return new FakeFcmHarness(server, time, new HttpClient(handler), json);
    }

    /// <summary>A valid assertion for this account now; tests then break one part.</summary>
    public string Assertion(
        string? kid = "",
        string? iss = null,
        string? aud = null,
        string? scope = FakeFcmServer.MessagingScope,
        long? iat = null,
        long? exp = null,
        RSA? key = null,
        string alg = "RS256")
    {
        var issued = iat ?? Now;
        return TestAssertion.Create(key ?? Key, kid == string.Empty ? KeyId : kid, iss ?? ClientEmail, aud ?? Server.TokenUrl, scope, issued, exp ?? issued + 3600, alg);
    }

    public async Task<(int Status, JsonElement Body)> PostTokenAsync(params (string Name, string Value)[] form)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, Server.TokenUrl)
        {
            Content = new FormUrlEncodedContent(form.Select(static f => new KeyValuePair<string, string>(f.Name, f.Value))),
        };
        Http2(request);
        using var response = await Client.SendAsync(request, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        using var document = JsonDocument.Parse(text);
        return ((int)response.StatusCode, document.RootElement.Clone());
    }

    public Task<(int Status, JsonElement Body)> ExchangeAsync(string assertion)
        => PostTokenAsync(("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion));

    /// <summary>An access token of this account (obtained once).</summary>
    public async Task<string> AccessTokenAsync()
    {
        if (_accessToken is null)
        {
            var (status, body) = await ExchangeAsync(Assertion());
            Assert.Equal(200, status);
            _accessToken = body.GetProperty("access_token").GetString()!;
        }

        return _accessToken;
    }

    /// <summary>A valid badge-style message body for <paramref name="token"/>.</summary>
    public static string Body(string token = Token)
        => "{\"message\":{\"token\":\"" + token + "\",\"data\":{\"type\":\"mail\",\"badge\":\"3\"},\"android\":{\"priority\":\"high\",\"collapse_key\":\"inbox\",\"ttl\":\"3600s\"}}}";

    /// <summary>A body whose message has the given inner JSON (without braces).</summary>
    public static string Message(string inner) => "{\"message\":{" + inner + "}}";

    public async Task<FcmAnswer> SendAsync(string body, string project = Project, string? bearer = "", string method = "POST", string? path = null)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), Server.BaseUrl + (path ?? "/v1/projects/" + project + "/messages:send"));
        if (method == "POST")
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        Http2(request);
        if (bearer == string.Empty)
        {
            bearer = await AccessTokenAsync();
        }

        if (bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }

        using var response = await Client.SendAsync(request, TestContext.Current.CancellationToken);
        var raw = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        string? status = null, code = null, info = null, message = null, name = null;
        using (var document = JsonDocument.Parse(raw))
        {
            var root = document.RootElement;
            if (root.TryGetProperty("name", out var n))
            {
                name = n.GetString();
            }

            if (root.TryGetProperty("error", out var error))
            {
                Assert.Equal((int)response.StatusCode, error.GetProperty("code").GetInt32());
                status = error.GetProperty("status").GetString();
                message = error.GetProperty("message").GetString();
                if (error.TryGetProperty("details", out var details))
                {
                    foreach (var detail in details.EnumerateArray())
                    {
                        var type = detail.GetProperty("@type").GetString();
                        if (type == FakeFcmServer.FcmErrorType)
                        {
                            code = detail.GetProperty("errorCode").GetString();
                        }
                        else if (type == "type.googleapis.com/google.rpc.ErrorInfo")
                        {
                            info = detail.GetProperty("reason").GetString();
                        }
                    }
                }
            }
        }

        return new FcmAnswer((int)response.StatusCode, raw, status, code, info, message, name, response.Headers.RetryAfter?.Delta, response.Version);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
        Key.Dispose();
    }

    private void Http2(HttpRequestMessage request)
    {
        request.Version = HttpVersion.Version20;
        request.VersionPolicy = Server.Certificate is null ? HttpVersionPolicy.RequestVersionExact : HttpVersionPolicy.RequestVersionOrLower;
    }
}
