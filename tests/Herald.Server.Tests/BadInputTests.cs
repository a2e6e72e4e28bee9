using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>Hostile and broken input gets a clear, protocol-correct answer and changes nothing.</summary>
public sealed class BadInputTests
{
    private static readonly string Token = new('d', 64);

    private static async Task AssertNothingChangedAsync(GatewayHarness gw, string registrationId, CancellationToken ct)
    {
        var registration = await gw.GetRegistrationAsync(registrationId, ct);
        Assert.False(registration.GetProperty("subscriptionBound").GetBoolean());
        Assert.False(registration.TryGetProperty("lastEventAt", out _));
        using var queue = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/queue", ct));
        Assert.Equal(0, EwsPushEndToEndTests.TotalQueued(queue.RootElement));
        Assert.Empty(gw.Apns.Requests);
    }

    public static TheoryData<string, string> BadSoapBodies => new()
    {
        { "malformed", "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><m:SendNotification" },
        { "xxe", "<?xml version=\"1.0\"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>&xxe;</soap:Body></soap:Envelope>" },
        { "billion-laughs", "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>&lol3;</soap:Body></soap:Envelope>" },
        { "not-soap", "<html><body>hello</body></html>" },
        { "other-operation", "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><m:GetItem xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\"/></soap:Body></soap:Envelope>" },
        { "empty", "" },
        { "deep", string.Concat(Enumerable.Repeat("<a>", 200)) + string.Concat(Enumerable.Repeat("</a>", 200)) },
    };

    [Theory]
    [MemberData(nameof(BadSoapBodies))]
    public async Task EwsCallback_BadBody_Answers400SoapFault_AndChangesNothing(string name, string body)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (id, callback) = await gw.RegisterAsync(Token, cancellationToken: ct);

        var (status, answer) = await Soap.PostAsync(gw.Client, callback, body, cancellationToken: ct);

        Assert.True(status == 400, $"{name}: expected 400, got {status}");
        Assert.Contains("Fault", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("passwd", answer, StringComparison.Ordinal);
        await AssertNothingChangedAsync(gw, id, ct);
    }

    [Fact]
    public async Task EwsCallback_WrongContentType_Answers415()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (id, callback) = await gw.RegisterAsync(Token, cancellationToken: ct);

        var (status, answer) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("S", 1), "application/json", ct);

        Assert.Equal(415, status);
        Assert.Contains("Fault", answer, StringComparison.Ordinal);
        await AssertNothingChangedAsync(gw, id, ct);
    }

    [Fact]
    public async Task EwsCallback_BodyOver1MiB_Answers413()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (id, callback) = await gw.RegisterAsync(Token, cancellationToken: ct);
        var padding = new string(' ', 1024 * 1024 + 10);
        var body = Soap.NewMail("S", 1).Replace("<m:ResponseMessages>", "<m:ResponseMessages>" + padding, StringComparison.Ordinal);

        // Herald answers 413 from Content-Length without reading the body; with Expect: 100-continue the
        // client waits for that answer instead of racing to write a megabyte into a closed connection.
        using var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("text/xml; charset=utf-8");
        using var request = new HttpRequestMessage(HttpMethod.Post, callback) { Content = content };
        request.Headers.ExpectContinue = true;
        using var response = await gw.Client.SendAsync(request, ct);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        await AssertNothingChangedAsync(gw, id, ct);
    }

    [Fact]
    public async Task Api_MissingOrWrongKey_Answers401Problem()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        using var anonymous = new HttpClient { BaseAddress = gw.Client.BaseAddress };

        using var none = await anonymous.GetAsync("v1/registrations/x", ct);
        anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "hk_not_a_real_key_at_all_0000");
        using var wrong = await anonymous.PostAsync("v1/registrations", JsonContent("{\"platform\":\"apns\"}"), ct);

        foreach (var response in new[] { none, wrong })
        {
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.ToString());
        }
    }

    public static TheoryData<string, string> BadRegistrations => new()
    {
        { "{not json", "not valid JSON" },
        { "[1,2,3]", "not valid JSON" },
        { "{\"platform\":\"bbm\",\"token\":\"aa\"}", "'platform'" },
        { "{\"platform\":\"apns\"}", "'token' is required" },
        { "{\"platform\":\"apns\",\"token\":\"xyz123\"}", "hexadecimal" },
        { "{\"platform\":\"apns\",\"token\":\"abc\"}", "even number" },
        { "{\"platform\":\"apns\",\"token\":\"" + new string('a', 64) + "\",\"style\":\"loud\"}", "'style'" },
        { "{\"platform\":\"apns\",\"token\":\"" + new string('a', 64) + "\",\"style\":\"preview\"}", "preview" },
        { "{\"platform\":\"apns\",\"token\":\"" + new string('a', 64) + "\",\"mailbox\":\"alice@contoso.com\"}", "mailbox" },
        { "{\"platform\":\"apns\",\"token\":\"" + new string('a', 64) + "\",\"environment\":\"staging\"}", "'environment'" },
        { "{\"platform\":\"apns\",\"token\":\"" + new string('a', 64) + "\",\"folders\":[]}", "'folders'" },
        { "{\"platform\":\"apns\",\"token\":\"" + new string('a', 64) + "\",\"topic\":\"bad topic!\"}", "'topic'" },
        { "{\"platform\":\"apns\",\"token\":\"" + new string('a', 64) + "\",\"locale\":\"<script>\"}", "'locale'" },
        { "{\"platform\":\"apns\",\"token\":\"" + new string('a', 64) + "\",\"source\":\"graph\"}", "connector" },
    };

    [Theory]
    [MemberData(nameof(BadRegistrations))]
    public async Task CreateRegistration_BadBody_Answers400ProblemWithClearDetail(string body, string detailContains)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);

        using var response = await gw.Client.PostAsync("v1/registrations", JsonContent(body), ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        Assert.Contains(detailContains, problem.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateRegistration_NotJson_Answers415()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);

        using var response = await gw.Client.PostAsync("v1/registrations", new StringContent("platform=apns", Encoding.UTF8, "application/x-www-form-urlencoded"), ct);

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task CreateRegistration_BodyOver1MiB_Answers413Problem()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var body = "{\"platform\":\"apns\",\"locale\":\"" + new string('x', 1024 * 1024 + 10) + "\"}";

        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/registrations") { Content = JsonContent(body) };
        request.Headers.ExpectContinue = true; // see EwsCallback_BodyOver1MiB_Answers413
        using var response = await gw.Client.SendAsync(request, ct);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task Registration_OtherTenantsOrUnknownId_Answers404()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);

        using var get = await gw.Client.GetAsync("v1/registrations/reg_doesnotexist", ct);
        using var patch = await gw.Client.PatchAsync("v1/registrations/reg_doesnotexist", JsonContent("{\"style\":\"generic\"}"), ct);
        using var delete = await gw.Client.DeleteAsync("v1/registrations/reg_doesnotexist", ct);

        Assert.All(new[] { get, patch, delete }, r => Assert.Equal(HttpStatusCode.NotFound, r.StatusCode));
    }

    private static StringContent JsonContent(string body) => new(body, Encoding.UTF8, "application/json");
}
