using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Herald.Server.Hosting;
using Herald.Simulators.Apns;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// Hostile input: well over 100,000 malformed, truncated and hostile bodies, generated from valid seeds by a seeded
/// mutator, sent to every public endpoint of a real gateway (in-memory transport, the same pipeline as Kestrel).
/// No answer may be a 5xx, every state change must be explained by a 2xx answer, and memory must stay flat.
/// </summary>
public sealed class FuzzTests
{
    private const int Seed = 20261123;
    private const int Rounds = 110_000;
    private const int Concurrency = 8;

    [Fact]
    public async Task EveryPublicEndpoint_SurvivesHostileBodies_WithoutA5xxOrAnUnexplainedStateChange()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var apns = await FakeApnsServer.StartAsync(cancellationToken: ct);
        var pem = apns.GenerateSigningKey(GatewayHarness.TeamId, GatewayHarness.KeyId, GatewayHarness.Topic);
        var directory = Path.Combine(Path.GetTempPath(), "herald-fuzz-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        var settings = GatewayHarness.Settings(directory, apns.BaseUrl, pem);
        settings["Herald:RateLimits:PerKeyPerSecond"] = "0";
        settings["Herald:RateLimits:PerAddressPerSecond"] = "0";
        settings["Herald:RateLimits:AuthFailuresPerMinute"] = "0";
        settings["Herald:PublicBaseUrl"] = "http://127.0.0.1:1";
        var app = HeraldApp.Build([], configure: b =>
        {
            b.Configuration.AddInMemoryCollection(settings);
            b.WebHost.UseTestServer();
        });
        try
        {
            await HeraldApp.StartAsync(app, ct);
            using var client = app.GetTestClient();
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", GatewayHarness.AdminKey);

            // One real registration, so the EWS endpoint also parses against a live key.
            using var reg = await client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = new string('d', 64), source = "ews-push" }, ct);
            Assert.Equal(HttpStatusCode.Created, reg.StatusCode);
            var liveKey = (await reg.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("callbackUrl").GetString()!.Split('/')[^1];

            // A Dovecot connector, so its bodies reach the parser (the fuzz target sends its Basic credentials).
            using (var connector = await client.PutAsJsonAsync("v1/connectors/fuzz", new { kind = "dovecot", username = "dovecot", password = "fuzz-password-123" }, ct))
            {
                Assert.True(connector.IsSuccessStatusCode);
            }

            var targets = Targets(liveKey);
            var databasePath = Path.Combine(directory, "herald.db");
            var before = await StateAsync(databasePath, ct);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var memoryBefore = GC.GetTotalMemory(forceFullCollection: true);

            var fiveHundreds = new List<string>();
            var successes = new Dictionary<string, int>(StringComparer.Ordinal);
            var tried = 0;
            await Parallel.ForAsync(0, Concurrency, new ParallelOptions { CancellationToken = ct }, async (worker, token) =>
            {
                var random = new Random(Seed + worker);
                for (var i = worker; i < Rounds; i += Concurrency)
                {
                    var target = targets[i % targets.Length];
                    var body = Mutator.Mutate(random, target.Seed);
                    using var request = new HttpRequestMessage(target.Method, target.Path) { Content = new ByteArrayContent(body) };
                    request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(random.Next(20) == 0 ? "application/octet-stream" : target.ContentType);
                    if (target.Name == "dovecot")
                    {
                        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String("dovecot:fuzz-password-123"u8.ToArray()));
                    }

                    using var response = await client.SendAsync(request, token);
                    var status = (int)response.StatusCode;
                    Interlocked.Increment(ref tried);
                    if (status >= 500)
                    {
                        lock (fiveHundreds)
                        {
                            if (fiveHundreds.Count < 20)
                            {
                                fiveHundreds.Add($"{target.Method} {target.Path} -> {status}: {Encoding.UTF8.GetString(body[..Math.Min(body.Length, 300)])}");
                            }
                        }
                    }
                    else if (status is >= 200 and < 300)
                    {
                        lock (successes)
                        {
                            successes[target.Name] = successes.GetValueOrDefault(target.Name) + 1;
                        }
                    }
                }
            });

            var after = await StateAsync(databasePath, ct);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var memoryAfter = GC.GetTotalMemory(forceFullCollection: true);
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"fuzz: {tried} bodies, {fiveHundreds.Count} 5xx, 2xx by endpoint: {string.Join(", ", successes.Select(p => p.Key + "=" + p.Value))}; " +
                $"registrations {before.Registrations}->{after.Registrations}, managed memory {memoryBefore / 1024 / 1024} MiB -> {memoryAfter / 1024 / 1024} MiB");

            Assert.True(tried >= 100_000, $"only {tried} bodies were tried");
            Assert.True(fiveHundreds.Count == 0, "5xx answers:\n" + string.Join("\n", fiveHundreds));
            Assert.Equal(before.Registrations + successes.GetValueOrDefault("registrations"), after.Registrations);
            Assert.True(memoryAfter < memoryBefore + (64L * 1024 * 1024), $"managed memory grew from {memoryBefore} to {memoryAfter} bytes");
        }
        finally
        {
            await app.StopAsync(CancellationToken.None);
            await app.DisposeAsync();
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private sealed record Target(string Name, HttpMethod Method, string Path, string ContentType, byte[] Seed);

    private static Target[] Targets(string liveKey)
    {
        static byte[] U(string s) => Encoding.UTF8.GetBytes(s);
        var soap = U(Soap.NewMail("sub-fuzz", 3));
        return
        [
            new("ews-live", HttpMethod.Post, "/ews/notify/" + liveKey, "text/xml; charset=utf-8", soap),
            new("ews-unknown", HttpMethod.Post, "/ews/notify/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "application/soap+xml; charset=utf-8", soap),
            new("registrations", HttpMethod.Post, "/v1/registrations", "application/json", U("""{"platform":"apns","token":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","source":"ews-push","style":"generic","folders":["inbox"],"locale":"ja-JP"}""")),
            new("notifications", HttpMethod.Post, "/v1/notifications", "application/json", U("""{"lane":"standard","devices":[{"platform":"apns","token":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}],"kind":"badge","badge":3,"ttlSeconds":60}""")),
            new("settings", HttpMethod.Put, "/v1/admin/settings", "application/json", U("""{"lanes":{"standard":{"ratePerMinute":50,"scope":"node"},"priority":{"ratePerMinute":null}},"retry":{"maxAttempts":5,"initialDelay":"00:00:30","maxDelay":"01:00:00"}}""")),
            new("connectors", HttpMethod.Put, "/v1/connectors/fuzz-other", "application/json", U("""{"kind":"dovecot","username":"dovecot","password":"a-long-enough-password","allowFrom":["127.0.0.1/32"]}""")),
            new("tenants", HttpMethod.Post, "/v1/tenants", "application/json", U("""{"name":"contoso"}""")),
            new("dovecot", HttpMethod.Post, "/dovecot/notify/fuzz", "application/json", U("""{"user":"carol","event":"MessageNew","folder":"INBOX","imap-uidvalidity":1,"imap-uid":2,"from":"=?utf-8?q?Dana?= <d@x>","subject":"hi","snippet":"s","unseen":3}""")),
            new("graph-notify", HttpMethod.Post, "/graph/notify/fuzz", "application/json", U("""{"value":[{"subscriptionId":"s","clientState":"c","changeType":"created","resource":"Users/u/Messages/m","tenantId":"t"}]}""")),
            new("graph-lifecycle", HttpMethod.Post, "/graph/lifecycle/fuzz", "application/json", U("""{"value":[{"subscriptionId":"s","clientState":"c","lifecycleEvent":"missed"}]}""")),
        ];
    }

    private sealed record State(long Registrations);

    private static async Task<State> StateAsync(string databasePath, CancellationToken ct)
    {
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={databasePath};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync(ct);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM registrations";
        return new State(Convert.ToInt64(await command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>A seeded mutator of request bodies: truncation, bit flips, insertions, nesting bombs, entity tricks, invalid UTF-8.</summary>
internal static class Mutator
{
    private static readonly byte[][] Hostile =
    [
        "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"u8.ToArray(),
        "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>&lol2;"u8.ToArray(),
        "&xxe;"u8.ToArray(),
        "\u0000"u8.ToArray(),
        [0xC3, 0x28, 0xA0, 0xA1, 0xFF, 0xFE],
        "\"\\u0000\\ud800\""u8.ToArray(),
        "99999999999999999999999999999999"u8.ToArray(),
        "-1"u8.ToArray(),
        "null"u8.ToArray(),
        "]]>"u8.ToArray(),
        "<![CDATA["u8.ToArray(),
        "{\"$ref\":\"#\"}"u8.ToArray(),
    ];

    public static byte[] Mutate(Random random, byte[] seed)
    {
        var body = new List<byte>(seed);
        var steps = 1 + random.Next(4);
        for (var s = 0; s < steps; s++)
        {
            switch (random.Next(10))
            {
                case 0 when body.Count > 0: // truncate
                {
                    var keep = random.Next(body.Count);
                    body.RemoveRange(keep, body.Count - keep);
                    break;
                }

                case 1 when body.Count > 0: // flip bytes
                    for (var i = 0; i < 1 + random.Next(8); i++)
                    {
                        var at = random.Next(body.Count);
                        body[at] ^= (byte)(1 << random.Next(8));
                    }

                    break;
                case 2: // insert a hostile fragment
                    body.InsertRange(random.Next(body.Count + 1), Hostile[random.Next(Hostile.Length)]);
                    break;
                case 3: // nesting bomb
                {
                    var depth = 100 + random.Next(5000);
                    var open = random.Next(2) == 0 ? "{\"a\":" : "<a>";
                    var fragment = new StringBuilder(depth * 5);
                    for (var i = 0; i < depth; i++)
                    {
                        fragment.Append(open);
                    }

                    body.InsertRange(random.Next(body.Count + 1), Encoding.UTF8.GetBytes(fragment.ToString()));
                    break;
                }

                case 4 when body.Count > 2: // duplicate a slice
                {
                    var start = random.Next(body.Count);
                    var length = Math.Min(body.Count - start, 1 + random.Next(200));
                    body.InsertRange(random.Next(body.Count + 1), body.GetRange(start, length));
                    break;
                }

                case 5: // a long string
                    body.InsertRange(random.Next(body.Count + 1), Enumerable.Repeat((byte)'A', 1000 + random.Next(100_000)));
                    break;
                case 6: // empty
                    body.Clear();
                    break;
                case 7 when body.Count > 0: // delete a slice
                {
                    var start = random.Next(body.Count);
                    body.RemoveRange(start, Math.Min(body.Count - start, 1 + random.Next(50)));
                    break;
                }

                case 8: // random bytes
                    for (var i = 0; i < 1 + random.Next(64); i++)
                    {
                        body.Insert(random.Next(body.Count + 1), (byte)random.Next(256));
                    }

                    break;
                default: // swap a token for another type
                    var text = Encoding.UTF8.GetString([.. body]);
                    text = random.Next(3) switch
                    {
                        0 => text.Replace("\"apns\"", "123", StringComparison.Ordinal).Replace(":3", ":\"3\"", StringComparison.Ordinal),
                        1 => text.Replace("[", "{", StringComparison.Ordinal),
                        _ => text.Replace("Notification", "Notificatio", StringComparison.Ordinal),
                    };
                    body = [.. Encoding.UTF8.GetBytes(text)];
                    break;
            }
        }

        return [.. body];
    }
}
