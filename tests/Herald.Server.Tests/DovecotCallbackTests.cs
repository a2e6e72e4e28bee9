using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// The Dovecot callback for what the real-Dovecot test does not send: POST as well as PUT, the documented
/// <c>MessageNew</c> spelling, matching by user (only that user's registrations are pushed), other folders, and HTTP
/// Basic being per connector (one connector's credentials do not open another's URL).
/// </summary>
public sealed class DovecotCallbackTests
{
    private const string User = "dovecot";
    private const string Password = "s3cret-password-42";

    private static string Token(int n) => "d1" + n.ToString("x2") + new string('e', 60);

    private static HttpRequestMessage Request(HttpMethod method, string url, string body, string user = User, string password = Password)
    {
        var request = new HttpRequestMessage(method, url) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":" + password)));
        return request;
    }

    private static async Task<HttpStatusCode> SendAsync(HttpClient client, HttpRequestMessage request, CancellationToken ct)
    {
        using (request)
        using (var response = await client.SendAsync(request, ct))
        {
            return response.StatusCode;
        }
    }

    [Fact]
    public async Task PostAndCapitalisedEvent_AreAccepted_OnlyTheNamedUsersDevicesArePushed_OtherFoldersAreIgnored()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await DovecotEndToEndTests.SetUpAsync(gw, "erin", Token(1), "badge", ct);
        using (var reg = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = Token(2), source = "dovecot", mailbox = "frank", connector = "mx", style = "badge" }, ct))
        {
            Assert.True(reg.IsSuccessStatusCode, await reg.Content.ReadAsStringAsync(ct));
        }

        using var raw = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };

        // A delivery into another folder (a Sieve fileinto) means nothing for the INBOX badge.
        Assert.Equal(HttpStatusCode.NoContent, await SendAsync(raw, Request(HttpMethod.Post, "dovecot/notify/mx", """{"user":"erin","event":"MessageNew","folder":"Archive","imap-uid":1,"unseen":9}"""), ct));

        // POST with the documented spelling: erin's device gets the badge; frank's does not.
        Assert.Equal(HttpStatusCode.NoContent, await SendAsync(raw, Request(HttpMethod.Post, "dovecot/notify/mx", """{"user":"erin","event":"MessageNew","folder":"INBOX","imap-uidvalidity":7,"imap-uid":2,"unseen":4}"""), ct));
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(1), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Contains("\"badge\":4", push.Payload!, StringComparison.Ordinal);

        // Then frank's mail (PUT, as Dovecot 2.3 sends it): only frank's device; erin's still has one push.
        Assert.Equal(HttpStatusCode.NoContent, await SendAsync(raw, Request(HttpMethod.Put, "dovecot/notify/mx", """{"user":"frank","event":"messageNew","folder":"INBOX","imap-uidvalidity":7,"imap-uid":1,"unseen":1}"""), ct));
        var frank = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(2), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Contains("\"badge\":1", frank.Payload!, StringComparison.Ordinal);
        Assert.Single(gw.Apns.Requests, r => r.Token == Token(1));
        Assert.DoesNotContain(gw.Apns.Requests, r => r.Payload!.Contains("\"badge\":9", StringComparison.Ordinal));

        // A user nobody registered: acknowledged (Dovecot must not log errors), nothing pushed.
        Assert.Equal(HttpStatusCode.NoContent, await SendAsync(raw, Request(HttpMethod.Post, "dovecot/notify/mx", """{"user":"nobody-here","event":"messageNew","folder":"INBOX","unseen":3}"""), ct));
        Assert.Equal(2, gw.Apns.Requests.Count);
    }

    [Fact]
    public async Task BasicCredentials_ArePerConnector()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await DovecotEndToEndTests.SetUpAsync(gw, "erin", Token(3), "badge", ct);
        using (var put = await gw.Client.PutAsJsonAsync("v1/connectors/mx2", new { kind = "dovecot", username = "other", password = "another-password-99" }, ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        using var raw = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        const string body = """{"user":"erin","event":"messageNew","folder":"INBOX","unseen":2}""";

        // mx's credentials on mx2's URL, and mx2's on mx's: refused.
        Assert.Equal(HttpStatusCode.Unauthorized, await SendAsync(raw, Request(HttpMethod.Put, "dovecot/notify/mx2", body), ct));
        Assert.Equal(HttpStatusCode.Unauthorized, await SendAsync(raw, Request(HttpMethod.Put, "dovecot/notify/mx", body, "other", "another-password-99"), ct));
        Assert.Empty(gw.Apns.Requests);

        // mx2's own credentials work on its URL, but erin is registered on mx: nothing is pushed through mx2.
        Assert.Equal(HttpStatusCode.NoContent, await SendAsync(raw, Request(HttpMethod.Put, "dovecot/notify/mx2", body, "other", "another-password-99"), ct));

        // mx's own credentials on its URL push erin's device.
        Assert.Equal(HttpStatusCode.NoContent, await SendAsync(raw, Request(HttpMethod.Put, "dovecot/notify/mx", body), ct));
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(3), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Contains("\"badge\":2", push.Payload!, StringComparison.Ordinal);
        Assert.Single(gw.Apns.Requests);
    }
}
