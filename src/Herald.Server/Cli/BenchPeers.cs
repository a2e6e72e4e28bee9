using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Herald.Simulators.Apns;

namespace Herald.Server.Cli;

/// <summary>
/// <c>herald bench dispatch --peers</c> (issue 10, item 1): one fake APNs (TLS, HTTP/2, self-signed certificate,
/// JWT checked like Apple), and against it, one after the other, the same N badge pushes from Herald draining its
/// durable queue, from <c>h2load</c> (the machine's ceiling: a C client doing nothing but HTTP/2), and from the Node.js
/// peers <c>@parse/node-apn</c> and <c>apns2</c> (bench/peers). Each sender has its own signing key, so no provider
/// token is refreshed more often than Apple allows. Prints one table with each rate and Herald's ratio to it.
/// </summary>
internal static partial class BenchPeers
{
    private static readonly (int Connections, int Streams, int Threads)[] H2loadShapes =
        [(1, 100, 1), (1, 500, 1), (2, 100, 1), (2, 250, 2), (4, 100, 2), (8, 50, 2)];

    internal sealed record Row(string Sender, string Setup, long Sent, long Failed, double Seconds, string? Note)
    {
        public double Rate => Seconds > 0 ? Sent / Seconds : 0;
    }

    public static async Task<int> RunAsync(int count, bool appendDocs, TextWriter output, CancellationToken cancellationToken, string? peersFolder = null, int warmUp = 0)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-peers-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        try
        {
            await using var fake = await BenchCommand.StartFakeAsync(cancellationToken);
            var certificate = Path.Combine(directory, "fake-apns.pem");
            await File.WriteAllTextAsync(certificate, fake.CertificatePem, cancellationToken);
            var body = Path.Combine(directory, "body.json");
            await File.WriteAllTextAsync(body, """{"aps":{"badge":1}}""", cancellationToken); // what Herald sends for a badge push
            await output.WriteLineAsync($"fake APNs {fake.BaseUrl} (TLS, HTTP/2, {Environment.ProcessorCount} cores shared by every sender and the fake); N = {count:N0} per sender, each after {warmUp:N0} untimed warm-up sends (h2load: its shape trials)");

            var rows = new List<Row>();
            var versions = new List<string> { ".NET " + Environment.Version };
            var skipped = new List<string>();
            var h2load = BenchSupport.Which("h2load");
            (int Connections, int Streams, int Threads) best = (1, 100, 1);
            if (h2load is null)
            {
                skipped.Add("h2load (not on PATH; Debian: apt-get install nghttp2-client)");
            }
            else
            {
                versions.Add((await BenchSupport.RunProcessAsync(h2load, ["--version"], null, TimeSpan.FromSeconds(10), cancellationToken)).Output.Trim());

                // Pick the shape that gives h2load its best rate (short runs); this also warms the fake up.
                var trial = Math.Min(count, 20_000);
                var bestRate = 0.0;
                foreach (var shape in H2loadShapes)
                {
                    var trialAllocated = GC.GetTotalAllocatedBytes();
                    var r = await H2loadAsync(h2load, fake, directory, body, trial, shape, cancellationToken);
                    trialAllocated = GC.GetTotalAllocatedBytes() - trialAllocated;
                    await output.WriteLineAsync($"  h2load trial -c {shape.Connections} -m {shape.Streams} -t {shape.Threads}: {r.Rate:0}/s ({r.Sent} ok, {r.Failed} failed; the fake allocated {trialAllocated / Math.Max(1, r.Sent)} bytes a request)");
                    if (r.Failed == 0 && r.Rate > bestRate)
                    {
                        (bestRate, best) = (r.Rate, shape);
                    }
                }
            }

            var herald = await BenchCommand.DispatchAsync(null, count, null, output, cancellationToken, fake, warmUp: warmUp);
            rows.Add(new Row(
                "Herald (durable SQLite queue → dispatcher)",
                "1 HTTP/2 connection (Herald:Apns:MaxConnections), ≤ 512 in flight, claim batches of 256",
                herald.Sent,
                herald.Failed,
                herald.Seconds,
                $"enqueue beforehand {herald.EnqueueSeconds:0.00} s; CPU {herald.Cpu.TotalSeconds:0.0} s incl. the fake ({herald.Cpu.TotalMicroseconds / Math.Max(1, herald.Sent):0} µs a notification), allocated {herald.Allocated / Math.Max(1, herald.Sent):0} bytes a notification incl. the fake"));

            var dotnetClient = await BenchDotnetClient.RunAsync(fake, count, warmUp, cancellationToken);
            rows.Add(dotnetClient);
            await output.WriteLineAsync($"{dotnetClient.Sender}: {dotnetClient.Sent} in {dotnetClient.Seconds:0.00} s = {dotnetClient.Rate:0}/s ({dotnetClient.Note})");

            if (h2load is not null)
            {
                // The fake's own CPU per request (h2load is another process): what any sender in this process must leave it.
                var cpuBefore = BenchSupport.ProcessUsage().Cpu;
                var allocatedBefore = GC.GetTotalAllocatedBytes();
                var r = await H2loadAsync(h2load, fake, directory, body, count, best, cancellationToken);
                var fakeCpu = BenchSupport.ProcessUsage().Cpu - cpuBefore;
                var fakeAllocated = GC.GetTotalAllocatedBytes() - allocatedBefore;
                r = r with { Note = (r.Note is null ? string.Empty : r.Note + "; ") + $"the fake APNs used {fakeCpu.TotalSeconds:0.0} s CPU for these ({fakeCpu.TotalMicroseconds / Math.Max(1, r.Sent):0} µs and {fakeAllocated / Math.Max(1, r.Sent):0} allocated bytes a request)" };
                rows.Add(r);
                await output.WriteLineAsync($"h2load: {r.Sent} in {r.Seconds:0.00} s = {r.Rate:0}/s");
            }

            var node = BenchSupport.Which("node");
            var npm = BenchSupport.Which("npm");
            var peers = peersFolder ?? BenchSupport.FindPeersFolder();
            if (node is null || npm is null || peers is null)
            {
                skipped.Add(node is null || npm is null ? "@parse/node-apn and apns2 (node/npm not on PATH)" : "@parse/node-apn and apns2 (bench/peers not found from the current directory)");
            }
            else
            {
                versions.Add("node " + (await BenchSupport.RunProcessAsync(node, ["--version"], null, TimeSpan.FromSeconds(10), cancellationToken)).Output.Trim());
                if (!File.Exists(Path.Combine(peers, "node_modules", "apns2", "package.json")) || !File.Exists(Path.Combine(peers, "node_modules", "@parse", "node-apn", "package.json")))
                {
                    await output.WriteLineAsync("installing the Node.js peers: npm ci --prefix " + peers);
                    var install = await BenchSupport.RunProcessAsync(npm, ["ci", "--prefix", peers, "--no-audit", "--no-fund"], peers, TimeSpan.FromMinutes(5), cancellationToken);
                    if (install.ExitCode != 0)
                    {
                        throw new InvalidOperationException("npm ci failed: " + install.Output);
                    }
                }

                foreach (var (script, keyId) in new[] { ("node-apn.js", "BENCHKEYNA"), ("apns2.mjs", "BENCHKEYA2") })
                {
                    var row = await NodePeerAsync(node, peers, script, keyId, fake, directory, certificate, count, warmUp, versions, cancellationToken);
                    rows.Add(row);
                    await output.WriteLineAsync($"{row.Sender}: {row.Sent} in {row.Seconds:0.00} s = {row.Rate:0}/s{(row.Note is null ? string.Empty : " (" + row.Note + ")")}");
                }
            }

            var heraldRate = rows[0].Rate;
            var table = BenchSupport.Table(
                ["sender", "setup", "sent", "failed", "seconds", "rate/s", "Herald ÷ sender"],
                rows.Select(r => (IReadOnlyList<string>)
                [
                    r.Sender, r.Setup, r.Sent.ToString("N0", CultureInfo.InvariantCulture), r.Failed.ToString("N0", CultureInfo.InvariantCulture),
                    BenchSupport.F(r.Seconds, "0.00"), BenchSupport.F(r.Rate), r == rows[0] ? "1.00" : BenchSupport.F(heraldRate / Math.Max(1, r.Rate), "0.00"),
                ]));
            var notes = new StringBuilder();
            foreach (var r in rows.Where(r => r.Note is not null))
            {
                notes.Append("- ").Append(r.Sender).Append(": ").AppendLine(r.Note);
            }

            foreach (var s in skipped)
            {
                notes.Append("- **SKIPPED** ").AppendLine(s);
            }

            await output.WriteLineAsync();
            await output.WriteLineAsync(table);
            await output.WriteAsync(notes.ToString());
            foreach (var s in skipped)
            {
                await output.WriteLineAsync($"!!! SKIPPED: {s} — this run is NOT a side-by-side comparison for it !!!");
            }

            await output.WriteLineAsync("load average after the run: " + BenchSupport.LoadAverage());
            if (appendDocs)
            {
                var path = BenchSupport.AppendToDocs("Dispatch side by side (`herald bench dispatch --peers`)", table + Environment.NewLine + notes, string.Join(", ", versions));
                await output.WriteLineAsync(path is null ? "docs/BENCHMARKS.md not found from the current directory; not appended." : "appended to " + path);
            }

            return rows.All(r => r.Sent == count && r.Failed == 0) ? HeraldCli.Success : HeraldCli.Failure;
        }
        finally
        {
            BenchCommand.TryDelete(directory);
        }
    }

    private static async Task<Row> H2loadAsync(string h2load, FakeApnsServer fake, string directory, string body, int count, (int Connections, int Streams, int Threads) shape, CancellationToken cancellationToken)
    {
        // Its own signing key, and one JWT for the whole run, as a provider keeps one for up to an hour.
        var keyId = "BENCHKEYH2";
        var pem = Path.Combine(directory, "h2load.p8");
        if (!File.Exists(pem))
        {
            await File.WriteAllTextAsync(pem, fake.GenerateSigningKey(BenchCommand.Team, keyId, BenchCommand.Topic), cancellationToken);
        }

        // One provider token for all runs: the fake, like Apple, refuses a key whose token changes too often.
        var jwtFile = Path.Combine(directory, "h2load.jwt");
        if (!File.Exists(jwtFile))
        {
            await File.WriteAllTextAsync(jwtFile, Jwt(await File.ReadAllTextAsync(pem, cancellationToken), keyId), cancellationToken);
        }

        var jwt = await File.ReadAllTextAsync(jwtFile, cancellationToken);
        var uris = Path.Combine(directory, "uris-" + count.ToString(CultureInfo.InvariantCulture) + ".txt");
        if (!File.Exists(uris))
        {
            await using var writer = new StreamWriter(uris);
            for (var i = 0; i < count; i++)
            {
                await writer.WriteLineAsync($"{fake.BaseUrl}/3/device/{BenchSupport.DeviceToken(i)}");
            }
        }

        var expiration = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        string[] arguments =
        [
            "-n", count.ToString(CultureInfo.InvariantCulture),
            "-c", shape.Connections.ToString(CultureInfo.InvariantCulture),
            "-m", shape.Streams.ToString(CultureInfo.InvariantCulture),
            "-t", shape.Threads.ToString(CultureInfo.InvariantCulture),
            "-H", "authorization: bearer " + jwt,
            "-H", "apns-topic: " + BenchCommand.Topic,
            "-H", "apns-push-type: alert",
            "-H", "apns-priority: 10",
            "-H", "apns-expiration: " + expiration,
            "-d", body,
            "-i", uris,
        ];
        var (exit, text) = await BenchSupport.RunProcessAsync(h2load, arguments, directory, TimeSpan.FromMinutes(10), cancellationToken);
        var finished = FinishedRegex().Match(text);
        var status = StatusRegex().Match(text);
        if (exit != 0 || !finished.Success || !status.Success)
        {
            return new Row("h2load", $"-c {shape.Connections} -m {shape.Streams} -t {shape.Threads}", 0, count, 0, "h2load failed: " + text.Trim().ReplaceLineEndings(" ")[..Math.Min(300, text.Trim().Length)]);
        }

        var seconds = ParseSeconds(finished.Groups[1].Value, finished.Groups[2].Value);
        var ok = long.Parse(status.Groups[1].Value, CultureInfo.InvariantCulture);
        return new Row("h2load", $"-c {shape.Connections} -m {shape.Streams} -t {shape.Threads} (best of {H2loadShapes.Length} shapes tried)", ok, count - ok, seconds, "h2load does not verify the server certificate (it has no option to); it sends one fixed header set, so no apns-id");
    }

    private static double ParseSeconds(string number, string unit)
    {
        var value = double.Parse(number, CultureInfo.InvariantCulture);
        return unit switch { "ms" => value / 1000, "us" => value / 1_000_000, "m" => value * 60, _ => value };
    }

    private static async Task<Row> NodePeerAsync(string node, string peers, string script, string keyId, FakeApnsServer fake, string directory, string certificate, int count, int warmUp, List<string> versions, CancellationToken cancellationToken)
    {
        var key = Path.Combine(directory, keyId + ".p8");
        await File.WriteAllTextAsync(key, fake.GenerateSigningKey(BenchCommand.Team, keyId, BenchCommand.Topic), cancellationToken);
        string[] arguments =
        [
            Path.Combine(peers, script),
            "--url", fake.BaseUrl, "--count", count.ToString(CultureInfo.InvariantCulture), "--ca", certificate, "--key", key,
            "--key-id", keyId, "--team", BenchCommand.Team, "--topic", BenchCommand.Topic, "--concurrency", "1000", "--warmup", warmUp.ToString(CultureInfo.InvariantCulture),
        ];
        var (exit, text) = await BenchSupport.RunProcessAsync(node, arguments, peers, TimeSpan.FromMinutes(20), cancellationToken);
        var line = text.Split('\n').LastOrDefault(l => l.StartsWith('{'));
        if (exit != 0 || line is null)
        {
            return new Row(script, "node", 0, count, 0, "failed: " + text.Trim().ReplaceLineEndings(" ")[..Math.Min(400, text.Trim().Length)]);
        }

        using var json = JsonDocument.Parse(line);
        var root = json.RootElement;
        var sender = root.GetProperty("sender").GetString()!;
        versions.Add(sender + " " + root.GetProperty("version").GetString());
        var setup = script.StartsWith("node-apn", StringComparison.Ordinal)
            ? "its defaults (2 HTTP/2 clients), 1,000 tokens per send()"
            : "its pool (32 HTTP/2 connections, 100 streams each), sendMany() of 1,000";
        var error = root.GetProperty("firstError").ValueKind == JsonValueKind.String ? "first error: " + root.GetProperty("firstError").GetString() : null;
        return new Row(sender, setup, root.GetProperty("sent").GetInt64(), root.GetProperty("failed").GetInt64(), root.GetProperty("seconds").GetDouble(), error);
    }

    /// <summary>An APNs provider token (ES256 JWT: kid, iss = team, iat = now).</summary>
    internal static string Jwt(string pem, string keyId)
    {
        using var key = ECDsa.Create();
        key.ImportFromPem(pem);
        var header = Base64Url(Encoding.UTF8.GetBytes($$"""{"alg":"ES256","kid":"{{keyId}}"}"""));
        var claims = Base64Url(Encoding.UTF8.GetBytes($$"""{"iss":"{{BenchCommand.Team}}","iat":{{DateTimeOffset.UtcNow.ToUnixTimeSeconds()}}}"""));
        var signature = key.SignData(Encoding.ASCII.GetBytes(header + "." + claims), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return header + "." + claims + "." + Base64Url(signature);
    }

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    [GeneratedRegex(@"finished in ([0-9.]+)(ms|us|s|m),")]
    private static partial Regex FinishedRegex();

    [GeneratedRegex(@"status codes: (\d+) 2xx")]
    private static partial Regex StatusRegex();
}
