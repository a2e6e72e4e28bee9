using Herald.Simulators.Exchange.Streaming;
using Herald.Sources.Ews.Autodiscover;
using Herald.Sources.Ews.Streaming;
using Xunit;
using static Herald.Simulators.Tests.Exchange.Streaming.StreamingKit;

namespace Herald.Simulators.Tests.Exchange.Streaming;

/// <summary>Autodiscover redirects (SOAP RedirectAddress/RedirectUrl, POX redirectAddr/redirectUrl) against the fake Exchange.</summary>
public sealed class AutodiscoverRedirectTests
{
    private const string Alias = "alias@contoso.test";

    [Fact]
    public async Task Soap_RedirectAddress_IsFollowed_AndCachedUnderTheAskedAddress()
    {
        await using var kit = await StartAsync();
        kit.Server.AddMailbox(Address(0), "MBX02");
        kit.Server.RedirectAutodiscover(Alias, toAddress: Address(0));
        var autodiscover = kit.Connector.Autodiscover!;

        var settings = await autodiscover.ResolveAsync([Alias], Ct);

        Assert.Equal("DAG-MBX02", settings[Alias].GroupingInformation);
        Assert.Equal(kit.Server.EwsUrl, settings[Alias].EwsUrl.AbsoluteUri);
        Assert.Equal(1, autodiscover.Redirects);
        Assert.Equal(2, autodiscover.SoapRequests);
        await autodiscover.ResolveAsync([Alias], Ct);
        Assert.Equal(2, autodiscover.SoapRequests); // cached under the alias
    }

    [Fact]
    public async Task Soap_RedirectUrl_ToTheSameHost_IsFollowed()
    {
        await using var kit = await StartAsync();
        kit.Server.AddMailbox(Address(0));
        kit.Server.AddMailbox(Address(1));
        kit.Server.RedirectAutodiscover(Address(0), toUrl: kit.Server.BaseUrl + "/emea/autodiscover/autodiscover.svc");
        var autodiscover = kit.Connector.Autodiscover!;

        var settings = await autodiscover.ResolveAsync([Address(0), Address(1)], Ct);

        Assert.Equal(2, settings.Count);
        Assert.Equal(1, autodiscover.Redirects);
        Assert.Equal(0, autodiscover.RefusedRedirects);
        Assert.Contains(kit.Server.Requests, r => r.Path == "/emea/autodiscover/autodiscover.svc" && r.Status == 200);
    }

    [Fact]
    public async Task Soap_RedirectUrl_ToAnotherHost_IsRefused_UnlessThatHostIsTrusted()
    {
        await using var kit = await StartAsync();
        kit.Server.AddMailbox(Address(0));
        var elsewhere = kit.Server.BaseUrl.Replace("127.0.0.1", "localhost", StringComparison.Ordinal) + "/other/autodiscover/autodiscover.svc";
        kit.Server.RedirectAutodiscover(Address(0), toUrl: elsewhere);
        var autodiscover = kit.Connector.Autodiscover!;

        var settings = await autodiscover.ResolveAsync([Address(0)], Ct);

        Assert.Empty(settings);
        Assert.Equal(1, autodiscover.RefusedRedirects);
        Assert.DoesNotContain(kit.Server.Requests, r => r.Path.StartsWith("/other/", StringComparison.Ordinal)); // the credentials never went there

        await using var trusting = await StartAsync(options: new EwsStreamingOptions { AutodiscoverRedirectHosts = ["localhost"] });
        trusting.Server.AddMailbox(Address(0));
        var trustedTarget = trusting.Server.BaseUrl.Replace("127.0.0.1", "localhost", StringComparison.Ordinal) + "/other/autodiscover/autodiscover.svc";
        trusting.Server.RedirectAutodiscover(Address(0), toUrl: trustedTarget);
        var resolved = await trusting.Connector.Autodiscover!.ResolveAsync([Address(0)], Ct);
        Assert.Single(resolved);
        Assert.Contains(trusting.Server.Requests, r => r.Path == "/other/autodiscover/autodiscover.svc" && r.Status == 200);
    }

    [Fact]
    public async Task RedirectLoop_GivesUpAfterTheLimit()
    {
        await using var kit = await StartAsync();
        kit.Server.RedirectAutodiscover("a@contoso.test", toAddress: "b@contoso.test");
        kit.Server.RedirectAutodiscover("b@contoso.test", toAddress: "a@contoso.test");
        var autodiscover = kit.Connector.Autodiscover!;

        var settings = await autodiscover.ResolveAsync(["a@contoso.test"], Ct);

        Assert.Empty(settings);
        Assert.Equal(EwsAutodiscoverClient.MaxRedirects + 1, autodiscover.SoapRequests);
        Assert.Equal(1, autodiscover.RefusedRedirects);
    }

    [Fact]
    public async Task Pox_RedirectAddrAndRedirectUrl_AreFollowed()
    {
        await using var kit = await StartAsync(new FakeEwsServerOptions { Seed = 11, SoapAutodiscover = false, HeartbeatInterval = TimeSpan.FromSeconds(1) });
        kit.Server.AddMailbox(Address(0), "MBX02");
        kit.Server.AddMailbox(Address(1));
        kit.Server.RedirectAutodiscover(Alias, toAddress: Address(0));
        kit.Server.RedirectAutodiscover(Address(1), toUrl: kit.Server.BaseUrl + "/apac/autodiscover/autodiscover.xml");
        var autodiscover = kit.Connector.Autodiscover!;

        var settings = await autodiscover.ResolveAsync([Alias, Address(1)], Ct);

        Assert.Equal("DAG-MBX02", settings[Alias].GroupingInformation);
        Assert.True(settings.ContainsKey(Address(1)));
        Assert.Equal(2, autodiscover.Redirects);
        Assert.Contains(kit.Server.Requests, r => r.Path == "/apac/autodiscover/autodiscover.xml" && r.Status == 200);
    }

    [Fact]
    public async Task RedirectStreams_LikeAnyMailbox()
    {
        await using var kit = await StartAsync();
        kit.Server.AddMailbox(Address(0));
        kit.Server.RedirectAutodiscover(Address(0), toUrl: kit.Server.BaseUrl + "/emea/autodiscover/autodiscover.svc");

        await kit.Connector.SetMailboxesAsync([Address(0)], Ct);
        await Eventually(() => kit.Connector.Groups.Count == 1 && kit.Connector.Groups[0].Connected && kit.Connector.Groups[0].Subscribed == 1
            && kit.Server.OpenConnections == 1);
        var mail = kit.Server.EmitNewMail(Address(0), "x", "n", "n@x.test");
        await Eventually(() => kit.Sink.NewMailItems(Address(0)).Contains(mail.ItemId));
    }

    [Theory]
    [InlineData("https://autodiscover.contoso.test/autodiscover/autodiscover.svc", "https://autodiscover.contoso.test/other/autodiscover.svc", true)] // same host
    [InlineData("https://autodiscover.contoso.test/autodiscover/autodiscover.svc", "https://mail.eu.contoso.test/autodiscover/autodiscover.svc", true)] // the mailbox's domain
    [InlineData("https://autodiscover.contoso.test/autodiscover/autodiscover.svc", "https://autodiscover-s.outlook.com/autodiscover/autodiscover.svc", true)] // Exchange Online
    [InlineData("https://autodiscover.contoso.test/autodiscover/autodiscover.svc", "http://autodiscover.contoso.test/autodiscover/autodiscover.svc", false)] // downgrade
    [InlineData("https://autodiscover.contoso.test/autodiscover/autodiscover.svc", "https://evil.test/autodiscover/autodiscover.svc", false)]
    [InlineData("https://autodiscover.contoso.test/autodiscover/autodiscover.svc", "https://notcontoso.test/autodiscover/autodiscover.svc", false)] // suffix, not a subdomain
    [InlineData("https://autodiscover.contoso.test/autodiscover/autodiscover.svc", "https://contoso.test.evil.test/autodiscover/autodiscover.svc", false)]
    [InlineData("https://autodiscover.contoso.test/autodiscover/autodiscover.svc", "https://user:pw@mail.contoso.test/autodiscover/autodiscover.svc", false)] // user info
    [InlineData("https://autodiscover.contoso.test/autodiscover/autodiscover.svc", "ftp://mail.contoso.test/autodiscover/autodiscover.svc", false)]
    public async Task TrustedRedirect_Policy(string from, string target, bool trusted)
    {
        await using var kit = await StartAsync();
        Assert.Equal(trusted, kit.Connector.Autodiscover!.IsTrustedRedirect(new Uri(from), new Uri(target), "dana@contoso.test"));
    }

    [Fact]
    public void Parser_ReadsRedirectsAndErrors()
    {
        var body = """
            <s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
            <GetUserSettingsResponseMessage xmlns="http://schemas.microsoft.com/exchange/2010/Autodiscover"><Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
            <ErrorCode>NoError</ErrorCode><UserResponses>
            <UserResponse><ErrorCode>RedirectAddress</ErrorCode><ErrorMessage/><RedirectTarget>dana@contoso.mail.onmicrosoft.com</RedirectTarget><UserSettings/></UserResponse>
            <UserResponse><ErrorCode>RedirectUrl</ErrorCode><ErrorMessage/><RedirectTarget>https://autodiscover-s.outlook.com/autodiscover/autodiscover.svc</RedirectTarget><UserSettings/></UserResponse>
            <UserResponse><ErrorCode>InvalidUser</ErrorCode><ErrorMessage/><RedirectTarget i:nil="true"/><UserSettings/></UserResponse>
            <UserResponse><ErrorCode>RedirectAddress</ErrorCode><ErrorMessage/><RedirectTarget>not-an-address</RedirectTarget><UserSettings/></UserResponse>
            </UserResponses></Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>
            """u8.ToArray();

        var answers = EwsResponses.ReadUserSettings(body)!;

        Assert.Equal(4, answers.Count);
        Assert.Equal("dana@contoso.mail.onmicrosoft.com", answers[0].RedirectAddress);
        Assert.Equal("autodiscover-s.outlook.com", answers[1].RedirectUrl!.Host);
        Assert.Equal("InvalidUser", answers[2].ErrorCode);
        Assert.Equal("RedirectAddress", answers[3].ErrorCode); // a redirect to garbage is an error, not a redirect
        Assert.All(answers, a => Assert.Null(a.Settings));
    }
}
