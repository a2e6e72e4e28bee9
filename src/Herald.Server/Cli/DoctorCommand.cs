using System.CommandLine;
using System.Diagnostics;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Herald.Core.Ports;
using Herald.Providers.Apns;
using Herald.Providers.Fcm;
using Herald.Providers.Wns;
using Herald.Server.Hosting;
using Microsoft.Extensions.Options;

namespace Herald.Server.Cli;

/// <summary>
/// <c>herald doctor</c>: checks a deployment without changing it and prints pass, warn or fail per check
/// with what to do; exit 1 when any check fails. Checks: configuration, database, credentials (parse),
/// provider reachability (TCP and TLS handshake), the public URL answering as an EWS listener, each connector
/// (OAuth2 token, EWS service account), and the clock against the peers' Date headers.
/// </summary>
internal static class DoctorCommand
{
    internal sealed record Check(string Name, string Status, string Detail);

    public static Command Create()
    {
        var command = new Command("doctor", "Check a deployment: database, credentials, provider reachability, public URL.");
        var host = HeraldCli.HostOptions.AddTo(command);
        var json = new Option<bool>("--json") { Description = "Print the results as JSON." };
        command.Options.Add(json);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var checks = await RunAsync(host.HostArgs(parse), parse.GetValue(host.Config), cancellationToken);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(checks.Select(c => new Dictionary<string, string> { ["name"] = c.Name, ["status"] = c.Status, ["detail"] = c.Detail })));
            }
            else
            {
                foreach (var c in checks)
                {
                    Console.WriteLine($"{c.Status.ToUpperInvariant(),-4}  {c.Name,-24} {c.Detail}");
                }
            }

            return checks.Any(c => c.Status == "fail") ? HeraldCli.Failure : HeraldCli.Success;
        });
        return command;
    }

    internal static async Task<IReadOnlyList<Check>> RunAsync(string[] hostArgs, string? configFile, CancellationToken cancellationToken)
    {
        var checks = new List<Check>();
        WebApplication app;
        try
        {
            app = HeraldApp.Build(hostArgs, configFile);
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or FormatException)
        {
            checks.Add(new Check("configuration", "fail", ex.Message));
            return checks;
        }

        await using (app)
        {
            var services = app.Services;
            HeraldOptions options;
            ApnsOptions apns;
            FcmOptions fcm;
            WnsOptions wns;
            try
            {
                options = services.GetRequiredService<IOptions<HeraldOptions>>().Value;
                apns = services.GetRequiredService<IOptions<ApnsOptions>>().Value;
                fcm = services.GetRequiredService<IOptions<FcmOptions>>().Value;
                wns = services.GetRequiredService<IOptions<WnsOptions>>().Value;
                checks.Add(new Check("configuration", "pass", "all options are valid"));
            }
            catch (OptionsValidationException ex)
            {
                checks.Add(new Check("configuration", "fail", string.Join(" ", ex.Failures)));
                return checks;
            }

            checks.Add(await DatabaseAsync(services, options, cancellationToken));
            checks.Add(ApnsCredential(apns));
            if (apns.HasCertificateCredential)
            {
                checks.Add(ApnsCertificateCheck(apns, services.GetRequiredService<TimeProvider>().GetUtcNow()));
            }

            checks.Add(FcmCredential(fcm));
            checks.Add(!string.IsNullOrWhiteSpace(wns.PackageSid) && !string.IsNullOrWhiteSpace(wns.ClientSecret)
                ? new Check("credential:wns", "pass", "package SID and client secret set")
                : new Check("credential:wns", "warn", "not configured (Herald:Wns:PackageSid, ClientSecret); WNS sends would wait in retry"));

            if (apns.HasTokenCredential)
            {
                checks.Add(await ReachableAsync("reach:apns-production", apns.ProductionUrl, apns.TrustedCertificateFile, cancellationToken));
                checks.Add(await ReachableAsync("reach:apns-sandbox", apns.SandboxUrl, apns.TrustedCertificateFile, cancellationToken));
            }

            if (fcm.HasCredential)
            {
                checks.Add(await ReachableAsync("reach:fcm", fcm.BaseUrl, fcm.TrustedCertificateFile, cancellationToken));
            }

            if (!string.IsNullOrWhiteSpace(wns.PackageSid))
            {
                checks.Add(await ReachableAsync("reach:wns-token", wns.TokenUrl, wns.TrustedCertificateFile, cancellationToken));
            }

            checks.Add(await PublicUrlAsync(options.PublicBaseUrl, cancellationToken));

            var peerDates = new List<DateTimeOffset>();
            var time = services.GetRequiredService<TimeProvider>();
            try
            {
                var connectors = services.GetRequiredService<Core.Connectors.ConnectorService>();
                checks.AddRange(await DoctorConnectors.CheckAsync(connectors, options.PublicBaseUrl, peerDates, time, cancellationToken));
            }
            catch (InvalidOperationException ex)
            {
                checks.Add(new Check("connectors", "fail", ex.Message));
            }

            checks.Add(DoctorConnectors.ClockSkew(peerDates, time));
        }

        return checks;
    }

    private static async Task<Check> DatabaseAsync(IServiceProvider services, HeraldOptions options, CancellationToken cancellationToken)
    {
        var name = options.Database.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase) ? options.Database : options.Database.Split(':')[0] + ":…";
        try
        {
            return await services.GetRequiredService<IStoreAdmin>().PingAsync(cancellationToken)
                ? new Check("database", "pass", name + " answers")
                : new Check("database", "fail", name + " does not answer");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return new Check("database", "fail", $"{name}: {ex.Message} (check the path, permissions and free disk space; run 'herald migrate')");
        }
    }

    private static Check ApnsCredential(ApnsOptions apns)
    {
        if (!apns.HasTokenCredential)
        {
            return new Check("credential:apns", "warn", "not configured (Herald:Apns:TeamId, KeyId, PrivateKeyFile); APNs sends would wait in retry");
        }

        try
        {
            var pem = apns.PrivateKeyPem ?? File.ReadAllText(apns.PrivateKeyFile!);
            using var key = ECDsa.Create();
            key.ImportFromPem(pem);
            return key.KeySize == 256
                ? new Check("credential:apns", "pass", $"token key {apns.KeyId} of team {apns.TeamId} loads (P-256)")
                : new Check("credential:apns", "fail", $"the key is {key.KeySize} bits; APNs needs the P-256 (.p8) key from the Apple Developer account");
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            return new Check("credential:apns", "fail", "the .p8 key does not load: " + ex.Message);
        }
    }

    /// <summary>The APNs certificate: it loads with its key, which topics it serves, and how long it has left (warn within 30 days).</summary>
    private static Check ApnsCertificateCheck(ApnsOptions apns, DateTimeOffset now)
    {
        try
        {
            using var certificate = !string.IsNullOrWhiteSpace(apns.CertificatePem)
                ? ApnsCertificate.FromPem(apns.CertificatePem, null, apns.CertificatePassword)
                : ApnsCertificate.FromFile(apns.CertificateFile!, apns.CertificatePassword, apns.CertificateKeyFile);
            var left = certificate.NotAfter - now;
            var detail = $"{certificate.Thumbprint[..16]}… topics [{string.Join(", ", certificate.Topics)}], expires {certificate.NotAfter:yyyy-MM-dd}";
            if (certificate.Topics.Count == 0)
            {
                return new Check("credential:apns-certificate", "fail", detail + ": no topics; is this an APNs certificate?");
            }

            return left <= TimeSpan.Zero
                ? new Check("credential:apns-certificate", "fail", detail + ": expired; renew it in the Apple Developer account (or Apple Push Certificates Portal for MDM)")
                : left <= TimeSpan.FromDays(30)
                    ? new Check("credential:apns-certificate", "warn", detail + $": expires in {left.TotalDays:0} days; renew it now")
                    : new Check("credential:apns-certificate", "pass", detail);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException or FormatException)
        {
            return new Check("credential:apns-certificate", "fail", "the certificate does not load: " + ex.Message + " (check the file, its password and that it holds the private key)");
        }
    }

    private static Check FcmCredential(FcmOptions fcm)
    {
        if (!fcm.HasCredential)
        {
            return new Check("credential:fcm", "warn", "not configured (Herald:Fcm:ServiceAccountFile); FCM sends would wait in retry");
        }

        try
        {
            var account = fcm.ServiceAccountJson is { Length: > 0 } json ? FcmServiceAccount.Parse(json) : FcmServiceAccount.FromFile(fcm.ServiceAccountFile!);
            return new Check("credential:fcm", "pass", $"service account {account.ClientEmail} (project {account.ProjectId ?? "-"}) parses");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return new Check("credential:fcm", "fail", "the service-account JSON does not parse: " + ex.Message);
        }
    }

    /// <summary>TCP connect and, for https, a TLS handshake (the configured pinned certificate, else the system trust).</summary>
    private static async Task<Check> ReachableAsync(string name, string url, string? trustedPem, CancellationToken cancellationToken)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            return new Check(name, "fail", $"'{url}' is not an absolute URL");
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        var clock = Stopwatch.StartNew();
        try
        {
            using var tcp = new TcpClient();
            await tcp.ConnectAsync(uri.Host, uri.Port, timeout.Token);
            if (uri.Scheme != Uri.UriSchemeHttps)
            {
                return new Check(name, "pass", $"{uri.Authority} accepts connections ({clock.ElapsedMilliseconds} ms, cleartext)");
            }

            using var pinned = trustedPem is null ? null : X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(trustedPem, timeout.Token));
            await using var tls = new SslStream(tcp.GetStream());
            await tls.AuthenticateAsClientAsync(
                new SslClientAuthenticationOptions
                {
                    TargetHost = uri.Host,
                    ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
                    RemoteCertificateValidationCallback = pinned is null ? null : (_, cert, _, _) => cert is not null && pinned.RawData.AsSpan().SequenceEqual(cert.GetRawCertData()),
                },
                timeout.Token);
            return new Check(name, "pass", $"{uri.Authority} TLS {tls.SslProtocol}, ALPN {tls.NegotiatedApplicationProtocol} ({clock.ElapsedMilliseconds} ms)");
        }
        catch (Exception ex) when (ex is SocketException or IOException or System.Security.Authentication.AuthenticationException or OperationCanceledException)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return new Check(name, "fail", $"{uri.Authority} unreachable: {(ex is OperationCanceledException ? "timed out after 5 s" : ex.Message)} (firewall, proxy or DNS?)");
        }
    }

    /// <summary>The public URL must answer a SendNotification for an unknown key with Unsubscribe, as Exchange will see it.</summary>
    private static async Task<Check> PublicUrlAsync(string? publicBaseUrl, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(publicBaseUrl))
        {
            return new Check("public-url", "warn", "Herald:PublicBaseUrl is not set: callback URLs use the listening address, which Exchange may not reach");
        }

        const string probe = """<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:SendNotification xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId>herald-doctor</t:SubscriptionId><t:StatusEvent><t:Watermark>AA==</t:Watermark></t:StatusEvent></m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></s:Body></s:Envelope>""";
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            using var content = new StringContent(probe, Encoding.UTF8, "text/xml");
            using var response = await http.PostAsync(publicBaseUrl.TrimEnd('/') + "/ews/notify/doctor-probe-not-a-real-key", content, cancellationToken);
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            return response.IsSuccessStatusCode && body.Contains(">Unsubscribe<", StringComparison.Ordinal)
                ? new Check("public-url", "pass", $"{publicBaseUrl} answers as an EWS listener")
                : new Check("public-url", "fail", $"{publicBaseUrl} answered {(int)response.StatusCode} without a SendNotificationResult: is Herald (or the proxy in front of it) serving /ews/notify/?");
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return new Check("public-url", "fail", $"{publicBaseUrl} unreachable from here: {ex.Message}");
        }
    }
}
