using System.Net.Http.Json;
using Herald.Core.Security;
using Herald.Simulators.Apns;
using Herald.Simulators.Exchange.Streaming;
using Herald.Simulators.Graph;
using OpenQA.Selenium;
using Xunit;

namespace Herald.Console.Tests;

/// <summary>The console's registration search by token fingerprint and its connectors view, in real headless Chromium.</summary>
public sealed class ConsoleSearchAndConnectorTests
{
    private static string Token(int n) => "f0" + n.ToString("x8") + new string('e', 54);

    private static IReadOnlyList<string> RowIds(Browser browser)
        => [.. browser.Driver.FindElements(By.CssSelector("#registration-table tbody tr")).Select(r => r.GetAttribute("data-id") ?? string.Empty)];

    [Fact]
    public async Task Registrations_SearchedByFingerprint_ListMatchesAndOpenDetails()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        var (first, _) = await gw.RegisterAsync(Token(1), ct);
        var (second, _) = await gw.RegisterAsync(Token(2), ct);
        var (twin, _) = await gw.RegisterAsync(Token(1), ct); // a second app on the same device token
        var fingerprint = Redact.Token(Token(1));

        using var browser = Browser.Start(nameof(Registrations_SearchedByFingerprint_ListMatchesAndOpenDetails));
        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.Find("nav").Displayed, "sign-in");
        browser.Open(gw.BaseUrl + "/#/registrations");
        browser.Until(() => RowIds(browser).Count == 3, "the list of all three registrations");
        Assert.Equal(new[] { first, second, twin }.Order(StringComparer.Ordinal), RowIds(browser));
        browser.Screenshot("list");

        // As a log line prints it, minus the prefix and in capitals: the keyboard only.
        var input = browser.Find("registration-id");
        input.SendKeys(fingerprint[4..].ToUpperInvariant() + Keys.Enter);
        browser.Until(() => RowIds(browser).Count == 2 && browser.Find("registration-list-title").Text.Contains(fingerprint, StringComparison.Ordinal), "the two registrations with that token");
        Assert.Equal(new[] { first, twin }.Order(StringComparer.Ordinal), RowIds(browser));
        Assert.All(browser.Driver.FindElements(By.CssSelector("#registration-table tbody tr td:nth-child(4)")), td => Assert.Equal(fingerprint, td.Text));
        browser.Screenshot("by-fingerprint");

        browser.Driver.FindElement(By.CssSelector($"#registration-table tr[data-id='{first}'] a")).Click();
        browser.Until(() => browser.TryFind("registration-status")?.Text == "active", "the registration's details");
        Assert.Contains(fingerprint, browser.Find("registration-detail").Text, StringComparison.Ordinal);
        Assert.Contains(first, browser.Find("registration-detail").Text, StringComparison.Ordinal);
        browser.Screenshot("details");

        // An id still opens one registration; an unknown fingerprint says so plainly.
        input.Clear();
        input.SendKeys(second + Keys.Enter);
        browser.Until(() => browser.Find("registration-detail").Text.Contains(second, StringComparison.Ordinal), "the other registration by id");
        // Deactivate it (the browser's confirmation accepted): it is gone from the API and from the search.
        browser.Find("deactivate").Click();
        browser.Driver.SwitchTo().Alert().Accept();
        browser.Until(() => browser.Find("status").Text.Contains("deleted", StringComparison.Ordinal), "the deletion confirmation");
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#registration-result .error")).FirstOrDefault()?.Text.Contains("No registration", StringComparison.Ordinal), "the deleted registration no longer found");
        using (var gone = await gw.Client.GetAsync("v1/registrations/" + second, ct))
        {
            Assert.Equal(System.Net.HttpStatusCode.NotFound, gone.StatusCode);
        }

        input.Clear();
        input.SendKeys("tok:00000000" + Keys.Enter);
        browser.Until(() => browser.TryFind("registration-none")?.Text.Contains("tok:00000000", StringComparison.Ordinal), "no match for an unknown fingerprint");
        Assert.DoesNotContain(browser.Driver.FindElements(By.CssSelector("#page .error")), e => e.Text.Length > 0);
    }

    [Fact]
    public async Task Connectors_ShowStreamingGroupsGraphSubscriptionsAndFailures()
    {
        var ct = TestContext.Current.CancellationToken;
        const string alice = "alice@contoso.test";
        const string bob = "bob@contoso.test";
        const string clientId = "11111111-2222-3333-4444-555555555555";
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 31 }, cancellationToken: ct);
        exchange.AddMailbox(alice, "MBX01");
        exchange.AddMailbox(bob, "MBX01");
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        graph.RegisterApplication(clientId, "the-right-secret");
        graph.AddMailbox(alice);
        await using var gw = await ConsoleHarness.StartAsync(
            new Dictionary<string, string?>
            {
                ["Herald:EwsStreaming:PollInterval"] = "00:00:00.200",
                ["Herald:EwsStreaming:MinBackOff"] = "00:00:00.100",
                ["Herald:Graph:ReconcileInterval"] = "00:00:00.200",
            },
            ct);
        await PutAsync(gw, "exchange", new
        {
            kind = "ews",
            autodiscover = true,
            autodiscoverUrl = exchange.AutodiscoverUrl,
            auth = new { type = "basic", username = exchange.Options.BasicUsername, password = exchange.Options.BasicPassword },
        }, ct);
        await PutAsync(gw, "o365", new { kind = "graph", baseUrl = graph.BaseUrl, auth = new { type = "oauth2", tokenUrl = graph.TokenUrl, clientId, clientSecret = "the-right-secret" } }, ct);
        await PutAsync(gw, "broken", new { kind = "graph", baseUrl = graph.BaseUrl, auth = new { type = "oauth2", tokenUrl = graph.TokenUrl, clientId, clientSecret = "a-wrong-secret" } }, ct);
        await RegisterAsync(gw, Token(11), "ews-streaming", alice, "exchange", ct);
        await RegisterAsync(gw, Token(12), "ews-streaming", bob, "exchange", ct);
        await RegisterAsync(gw, Token(13), "graph", alice, "o365", ct);
        await RegisterAsync(gw, Token(14), "graph", alice, "broken", ct);

        using var browser = Browser.Start(nameof(Connectors_ShowStreamingGroupsGraphSubscriptionsAndFailures));
        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.Find("nav").Displayed, "sign-in");
        browser.Find("nav").FindElement(By.CssSelector("a[data-page=connectors]")).Click();
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#connector-table tbody tr")).Count == 3, "the three connectors");

        // EWS: the groups connect (the page refreshes itself), members and subscriptions add up, no address is shown.
        browser.Until(
            () =>
            {
                var rows = browser.Driver.FindElements(By.CssSelector("#connector-exchange table.streaming-groups tbody tr"));
                return rows.Count > 0
                    && rows.All(r => r.FindElement(By.CssSelector("td[data-col=connected]")).Text == "connected")
                    && rows.Sum(r => int.Parse(r.FindElement(By.CssSelector("td[data-col=subscribed]")).Text, System.Globalization.CultureInfo.InvariantCulture)) == 2;
            },
            "the EWS streaming groups connected with both mailboxes subscribed",
            TimeSpan.FromSeconds(40));
        var members = browser.Driver.FindElements(By.CssSelector("#connector-exchange td[data-col=members]")).Sum(td => int.Parse(td.Text, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(2, members);

        // Graph: the good connector's subscription and its expiry; the broken one's token failure.
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#connector-o365 td[data-col=state]")).FirstOrDefault()?.Text == "active", "the Graph subscription", TimeSpan.FromSeconds(40));
        Assert.Contains("in ", browser.Driver.FindElement(By.CssSelector("#connector-o365 td[data-col=expires]")).Text, StringComparison.Ordinal);
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#connector-broken .faults li")).FirstOrDefault()?.Text.Contains("token", StringComparison.Ordinal), "the broken connector's token failure", TimeSpan.FromSeconds(40));
        Assert.Contains("401", browser.Driver.FindElement(By.CssSelector("#connector-broken .faults li")).Text, StringComparison.Ordinal);

        var page = browser.Find("page").Text;
        Assert.DoesNotContain(alice, page, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(bob, page, StringComparison.OrdinalIgnoreCase);
        browser.Screenshot("connectors");

        // New mail shows as the group's last event on the next refresh.
        exchange.EmitNewMail(alice, "s", "n", "n@example.org");
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#connector-exchange td[data-col=event]")).Any(td => td.Text.EndsWith("ago", StringComparison.Ordinal)), "the event in the group's row", TimeSpan.FromSeconds(40));
        browser.Screenshot("after-event");
    }

    [Fact]
    public async Task DeadLetters_PurgedFromConsole_AreGoneAndTheRestStay()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        using (var put = await gw.Client.PutAsync("v1/admin/settings", ConsoleHarness.Json("""{"retry":{"maxAttempts":1,"initialDelay":"00:00:00.050","maxDelay":"00:00:00.100"}}"""), ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        string[] tokens = [Token(21), Token(22)];
        foreach (var token in tokens)
        {
            gw.Apns.Script(token, (503, "ServiceUnavailable"));
        }

        using (var send = await gw.Client.PostAsJsonAsync("v1/notifications", new { lane = "priority", kind = "badge", badge = 1, devices = tokens.Select(t => new { platform = "apns", token = t }).ToArray() }, ct))
        {
            Assert.Equal(System.Net.HttpStatusCode.Accepted, send.StatusCode);
        }

        long[] dead = [];
        for (var i = 0; i < 200 && dead.Length < 2; i++)
        {
            dead = [.. (await gw.GetJsonAsync("v1/admin/dead", ct)).GetProperty("items").EnumerateArray().Select(d => d.GetProperty("id").GetInt64())];
            await Task.Delay(50, ct);
        }

        Assert.Equal(2, dead.Length);
        using var browser = Browser.Start(nameof(DeadLetters_PurgedFromConsole_AreGoneAndTheRestStay));
        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.Find("nav").Displayed, "sign-in");
        browser.Open(gw.BaseUrl + "/#/dead");
        var box = browser.Until(() => browser.TryFind("dead-" + dead[0]), "the dead letters in the list");
        box.SendKeys(Keys.Space);
        browser.Find("dead-purge").Click();
        browser.Driver.SwitchTo().Alert().Accept();
        browser.Until(() => browser.Find("status").Text.Contains("Purged 1", StringComparison.Ordinal), "the purge confirmation");
        browser.Until(() => browser.TryFind("dead-" + dead[0]) is null && browser.TryFind("dead-" + dead[1]) is not null, "only the other dead letter left");
        browser.Screenshot("purged");
        var left = (await gw.GetJsonAsync("v1/admin/dead", ct)).GetProperty("items").EnumerateArray().Select(d => d.GetProperty("id").GetInt64());
        Assert.Equal([dead[1]], left);
    }

    [Fact]
    public async Task Credentials_ExpiringCertificate_IsFlaggedThenReplacedFromConsole()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        using var ca = FakeApnsCertificateAuthority.Create();
        using var expiring = ca.Issue(ConsoleHarness.Topic, notAfter: DateTimeOffset.UtcNow.AddDays(10));
        using (var put = await gw.Client.PutAsJsonAsync("v1/tenants/default/credentials/apns", new { certificatePfxBase64 = Convert.ToBase64String(FakeApnsCertificateAuthority.ExportPkcs12(expiring, "pw")), password = "pw" }, ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        using var renewed = ca.Issue(ConsoleHarness.Topic, notAfter: DateTimeOffset.UtcNow.AddDays(300));
        var file = Path.Combine(gw.Directory, "renewed.p12");
        await File.WriteAllBytesAsync(file, FakeApnsCertificateAuthority.ExportPkcs12(renewed, "pw-2"), ct);

        using var browser = Browser.Start(nameof(Credentials_ExpiringCertificate_IsFlaggedThenReplacedFromConsole));
        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.Find("nav").Displayed, "sign-in");
        browser.Open(gw.BaseUrl + "/#/credentials");
        browser.Until(() => browser.TryFind("tenant-id"), "the tenant field").SendKeys("default" + Keys.Enter);
        var warning = browser.Until(() => browser.Driver.FindElements(By.CssSelector("#list-body table .badge.warn")).FirstOrDefault(), "the expiry warning");
        Assert.Matches("expires in (9|10|11) d", warning.Text);
        Assert.True(warning.Displayed, "the warning is visible without scrolling the table");
        Assert.Contains("within 30 days", browser.Find("cred-expiry-warning").Text, StringComparison.Ordinal);
        browser.Screenshot("expiring");

        browser.Driver.ExecuteScript("const k = document.getElementById('cred-kind'); k.value = 'apns-certificate'; k.dispatchEvent(new Event('change'));");
        browser.Until(() => browser.Find("cred-p12").Displayed, "the certificate fields");
        browser.Find("cred-p12").SendKeys(file);
        browser.Find("cred-password").SendKeys("pw-2");
        browser.Find("cred-upload").Click();
        browser.Until(() => browser.Find("cred-result").Text.StartsWith("Saved apns certificate", StringComparison.Ordinal), "the replacement confirmation: " + browser.Find("cred-result").Text);
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#list-body table")).Count > 0 && browser.Driver.FindElements(By.CssSelector("#list-body table .badge.warn")).Count == 0 && browser.TryFind("cred-expiry-warning") is null, "the list without the warning");
        browser.Screenshot("replaced");
        var listed = await gw.GetJsonAsync("v1/tenants/default/credentials", ct);
        var item = Assert.Single(listed.GetProperty("items").EnumerateArray(), i => i.GetProperty("platform").GetString() == "apns");
        Assert.True(item.GetProperty("expiresAt").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddDays(200));
    }

    private static async Task PutAsync(ConsoleHarness gw, string name, object body, CancellationToken ct)
    {
        using var response = await gw.Client.PutAsJsonAsync("v1/connectors/" + name, body, ct);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(ct));
    }

    private static async Task RegisterAsync(ConsoleHarness gw, string token, string source, string mailbox, string connector, CancellationToken ct)
    {
        using var response = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source, mailbox, connector }, ct);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(ct));
    }
}
