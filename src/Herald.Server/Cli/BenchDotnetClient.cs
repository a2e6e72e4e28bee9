using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography.X509Certificates;
using Herald.Providers.Http;
using Herald.Simulators.Apns;

namespace Herald.Server.Cli;

/// <summary>
/// The .NET HTTP/2 client alone, for <c>herald bench dispatch --peers</c>: the same N badge pushes with the same headers
/// over one <see cref="SocketsHttpHandler"/> connection to the same fake APNs, up to 512 in flight, from this process
/// (beside the fake, as Herald is), with no queue, no database and no outcome handling. It is the ceiling any .NET
/// sender reaches here, and so separates the cost of the HTTP/2 client from the cost of Herald's durable queue.
/// </summary>
internal static class BenchDotnetClient
{
    public static async Task<BenchPeers.Row> RunAsync(FakeApnsServer fake, int count, int warmUp, CancellationToken cancellationToken)
    {
        const string KeyId = "BENCHKEYNC"; // its own signing key, like every sender
        var jwt = BenchPeers.Jwt(fake.GenerateSigningKey(BenchCommand.Team, KeyId, BenchCommand.Topic), KeyId);
        using var trusted = X509Certificate2.CreateFromPem(fake.CertificatePem);
        using var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = false,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
            SslOptions = { RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null && certificate.GetRawCertData().AsSpan().SequenceEqual(trusted.RawData) },
        };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
        using var headerGate = new HeaderWriteGate(); // as Herald's providers: see HeaderWriteGate
        var body = """{"aps":{"badge":1}}"""u8.ToArray();
        var expiration = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        var authorization = new AuthenticationHeaderValue("bearer", jwt);
        long next = -1, sent = 0, failed = 0;

        // i >= 0: measured send i; i < 0: warm-up send -i - 1.

        async Task SendAsync(long i)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, fake.BaseUrl + "/3/device/" + (i < 0 ? BenchSupport.WarmUpDeviceToken(-i - 1) : BenchSupport.DeviceToken(i)))
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Content = new GatedByteArrayContent(body),
            };
            request.Headers.Authorization = authorization;
            request.Headers.TryAddWithoutValidation("apns-id", Guid.NewGuid().ToString("D"));
            request.Headers.TryAddWithoutValidation("apns-topic", BenchCommand.Topic);
            request.Headers.TryAddWithoutValidation("apns-push-type", "alert");
            request.Headers.TryAddWithoutValidation("apns-priority", "10");
            request.Headers.TryAddWithoutValidation("apns-expiration", expiration);
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await headerGate.SendAsync(client, request, cancellationToken);
            Interlocked.Increment(ref response.IsSuccessStatusCode ? ref sent : ref failed);
        }

        async Task RunAllAsync(long total, Func<long, long> token)
        {
            next = -1;
            await Task.WhenAll(Enumerable.Range(0, 512).Select(_ => Task.Run(
                async () =>
                {
                    for (var i = Interlocked.Increment(ref next); i < total; i = Interlocked.Increment(ref next))
                    {
                        await SendAsync(token(i));
                    }
                },
                cancellationToken)));
        }

        await SendAsync(-1); // opens the connection
        await RunAllAsync(warmUp, static i => -i - 2); // untimed, to warm-up tokens of their own
        sent = failed = 0;
        var cpu0 = BenchSupport.ProcessUsage().Cpu;
        var allocated0 = GC.GetTotalAllocatedBytes();
        var clock = Stopwatch.StartNew();
        await RunAllAsync(count, static i => i);
        var seconds = clock.Elapsed.TotalSeconds;
        var cpu = BenchSupport.ProcessUsage().Cpu - cpu0;
        var allocated = GC.GetTotalAllocatedBytes() - allocated0;
        return new BenchPeers.Row(
            ".NET HttpClient alone (no queue)",
            "1 HTTP/2 connection (SocketsHttpHandler), 512 in flight, the same header-write gate (32), same headers, nothing stored",
            sent,
            failed,
            seconds,
            $"the .NET client's ceiling beside the fake: CPU {cpu.TotalSeconds:0.0} s incl. the fake ({cpu.TotalMicroseconds / Math.Max(1, sent):0} µs a request), allocated {allocated / Math.Max(1, sent):0} bytes a request incl. the fake");
    }
}
