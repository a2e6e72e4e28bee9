using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Server.Auth;
using Herald.Simulators.Exchange.Streaming;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>What the EWS streaming tests share: the connector against the fake EWS server, registrations, waiting.</summary>
internal static class EwsStreamingTestKit
{
    /// <summary>The streaming connector's name in every streaming test.</summary>
    public const string Connector = "contoso-exchange";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Creates the streaming connector (Autodiscover, Basic auth) against <paramref name="exchange"/> through the API.</summary>
    public static async Task ConnectAsync(GatewayHarness gw, FakeEwsServer exchange)
    {
        using var put = await gw.Client.PutAsJsonAsync("v1/connectors/" + Connector, new
        {
            kind = "ews",
            autodiscover = true,
            autodiscoverUrl = exchange.AutodiscoverUrl,
            auth = new { type = "basic", username = exchange.Options.BasicUsername, password = exchange.Options.BasicPassword },
        }, Ct);
        Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(Ct));
    }

    /// <summary>Registers an APNs device for <paramref name="mailbox"/> on the streaming connector through the API; returns its id.</summary>
    public static async Task<string> RegisterAsync(GatewayHarness gw, string mailbox, string token, string style)
    {
        using var reg = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-streaming", mailbox, connector = Connector, style }, Ct);
        var body = await reg.Content.ReadAsStringAsync(Ct);
        Assert.True(reg.IsSuccessStatusCode, body);
        using var doc = JsonDocument.Parse(body);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    /// <summary>
    /// Writes a streaming registration straight to the store, as another node of a farm would (or as a change whose
    /// notification was lost): nothing on this node signals it.
    /// </summary>
    public static async Task WriteUnsignalledAsync(GatewayHarness gw, string mailbox, string token)
    {
        var secrets = gw.App.Services.GetRequiredService<SecretBox>();
        var now = DateTimeOffset.UtcNow;
        await gw.App.Services.GetRequiredService<IRegistrationStore>().CreateAsync(
            new Registration
            {
                Id = "reg_" + Guid.CreateVersion7().ToString("N"),
                TenantId = AdminKeyBootstrap.DefaultTenant,
                Platform = Platform.Apns,
                Token = token,
                Topic = GatewayHarness.Topic,
                Source = SourceKind.EwsStreaming,
                Style = NotificationStyle.Badge,
                Status = RegistrationStatus.Active,
                Connector = Connector,
                MailboxHash = secrets.MailboxHash(mailbox),
                SealedMailbox = secrets.Seal(mailbox, "mailbox"),
                CreatedAt = now,
                UpdatedAt = now,
            },
            null,
            Ct);
    }

    /// <summary>Waits (polling every 20 ms, at most <paramref name="within"/>, 20 s by default) until <paramref name="condition"/> holds.</summary>
    public static async Task Eventually(Func<bool> condition, string what, TimeSpan? within = null)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < (within ?? TimeSpan.FromSeconds(20)), "Timed out waiting for " + what);
            await Task.Delay(20, Ct);
        }
    }
}
