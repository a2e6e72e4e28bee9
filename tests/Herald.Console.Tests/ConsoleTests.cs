using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Core.Settings;
using Microsoft.Extensions.DependencyInjection;
using OpenQA.Selenium;
using Xunit;

namespace Herald.Console.Tests;

/// <summary>The admin console in real headless Chromium against a real gateway (Kestrel, SQLite, fake APNs).</summary>
public sealed class ConsoleTests
{
    private static string Token(int tenant, int n) => tenant.ToString("x2") + n.ToString("x8") + new string('c', 54);

    private static async Task<string> SendAsync(HttpClient client, string lane, IEnumerable<string> tokens, CancellationToken ct)
    {
        using var response = await client.PostAsJsonAsync("v1/notifications", new { lane, kind = "badge", badge = 1, devices = tokens.Select(t => new { platform = "apns", token = t }).ToArray() }, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, text);
        using var json = JsonDocument.Parse(text);
        return json.RootElement.GetProperty("id").GetString()!;
    }

    private static async Task<JsonElement> WaitForStatesAsync(ConsoleHarness gw, string requestId, Func<JsonElement, bool> done, CancellationToken ct)
    {
        for (var i = 0; i < 300; i++)
        {
            var status = await gw.GetJsonAsync("v1/notifications/" + requestId, ct);
            if (done(status.GetProperty("states")))
            {
                return status;
            }

            await Task.Delay(50, ct);
        }

        throw new TimeoutException("request did not reach the state: " + (await gw.GetJsonAsync("v1/notifications/" + requestId, ct)).GetRawText());
    }

    private static long Number(string text) => long.Parse(text.Replace(",", string.Empty, StringComparison.Ordinal).Trim(), System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task SignIn_WrongKeyRefused_AdminKeyShowsDashboard()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        using var browser = Browser.Start(nameof(SignIn_WrongKeyRefused_AdminKeyShowsDashboard));

        browser.SignIn(gw.BaseUrl, "hk_not_a_real_key_0000000000000");
        browser.Until(() => browser.Find("sign-in-error").Text.Contains("not accepted", StringComparison.Ordinal), "the refusal of a wrong key");
        browser.Screenshot("refused");

        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.Find("nav").Displayed, "the navigation after sign-in");
        Assert.Equal("admin key", browser.Find("role").Text);
        browser.Until(() => browser.TryFind("tile-sent")?.Text == "0", "the dashboard's live totals");
        Assert.Contains("console-node", browser.Find("dash-where").Text, StringComparison.Ordinal);
        Assert.Contains("test-region", browser.Find("dash-where").Text, StringComparison.Ordinal);
        Assert.Equal("page", browser.Driver.FindElement(By.CssSelector("#nav a[data-page=dashboard]")).GetAttribute("aria-current"));

        // The key lives in this tab's session storage only, and the console sends it as a Bearer token.
        Assert.Equal(ConsoleHarness.AdminKey, browser.Driver.ExecuteScript("return sessionStorage.getItem('herald.apiKey')") as string);
        Assert.Null(browser.Driver.ExecuteScript("return localStorage.getItem('herald.apiKey')"));
        browser.Screenshot("dashboard");

        browser.Find("sign-out").Click();
        browser.Until(() => browser.Find("sign-in").Displayed, "the sign-in form after signing out");
        Assert.Null(browser.Driver.ExecuteScript("return sessionStorage.getItem('herald.apiKey')"));
    }

    [Fact]
    public async Task Dashboard_AfterEwsTraffic_UpdatesLive()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        using var browser = Browser.Start(nameof(Dashboard_AfterEwsTraffic_UpdatesLive));
        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.TryFind("tile-sent")?.Text == "0", "the dashboard before traffic");
        browser.Screenshot("before");

        // Exchange posts new mail for three mailboxes; each callback carries two events.
        for (var i = 1; i <= 3; i++)
        {
            var (_, callback) = await gw.RegisterAsync(Token(1, i), ct);
            Assert.Equal(200, await gw.PostEwsNewMailAsync(callback, "SUB-" + i, i, ct));
        }

        await gw.Apns.WaitForAcceptedAsync(3, ct);

        // Without reloading: the polled totals move.
        browser.Until(() => browser.Find("tile-sent").Text == "3", "the sent total to reach 3 live");
        browser.Until(() => Number(browser.Find("tile-events").Text) == 6, "6 events received");
        Assert.Equal("0", browser.Driver.FindElement(By.CssSelector("#queue-table tr[data-lane=priority] td[data-state=queued]")).Text);

        // And the charts get their first 10-second sample with the sends in it.
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#chart-sends svg path")).Count > 0, "a line in the sends chart", TimeSpan.FromSeconds(40));
        var label = browser.Driver.FindElement(By.CssSelector("#chart-sends svg")).GetAttribute("aria-label");
        Assert.Contains("apns", label, StringComparison.Ordinal);
        browser.Screenshot("after-traffic");
    }

    [Fact]
    public async Task Settings_SavedInConsole_TakesEffectInApiAndThrottle()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        using var browser = Browser.Start(nameof(Settings_SavedInConsole_TakesEffectInApiAndThrottle));
        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.Find("nav").Displayed, "sign-in");
        browser.Open(gw.BaseUrl + "/#/settings");
        var rate = browser.Until(() => browser.TryFind("standard-rate"), "the settings form");
        rate.Clear();
        rate.SendKeys("1");
        var scope = browser.Find("standard-scope");
        scope.SendKeys("node"); // type-ahead selection, as with the keyboard
        Assert.Equal("node", scope.GetDomProperty("value"));
        var attempts = browser.Find("retry-attempts");
        attempts.Clear();
        attempts.SendKeys("3");
        browser.Screenshot("edited");
        browser.Find("settings-save").Click();
        browser.Until(() => browser.TryFind("settings-saved")?.Text.Contains("version 1", StringComparison.Ordinal), "the saved confirmation");
        Assert.Equal(string.Empty, browser.Find("settings-error").Text);
        browser.Screenshot("saved");

        // The API shows it...
        var saved = await gw.GetJsonAsync("v1/admin/settings", ct);
        var standard = saved.GetProperty("lanes").GetProperty("standard");
        Assert.Equal(1, standard.GetProperty("ratePerMinute").GetInt32());
        Assert.Equal("node", standard.GetProperty("scope").GetString());
        Assert.Equal(3, saved.GetProperty("retry").GetProperty("maxAttempts").GetInt32());
        Assert.Equal(1, saved.GetProperty("version").GetInt64());
        var live = gw.App.Services.GetRequiredService<SettingsMonitor>().Current;
        Assert.Equal(1, live.Standard.RatePerMinute);
        Assert.Equal(ThrottleScope.Node, live.Standard.Scope);

        // ...and the throttle applies it: at one a minute, one of four standard sends goes out, three wait.
        var tokens = Enumerable.Range(0, 4).Select(i => Token(2, i)).ToArray();
        var id = await SendAsync(gw.Client, "standard", tokens, ct);
        await WaitForStatesAsync(gw, id, s => s.GetProperty("sent").GetInt64() == 1, ct);
        await Task.Delay(TimeSpan.FromSeconds(1.5), ct);
        var states = (await gw.GetJsonAsync("v1/notifications/" + id, ct)).GetProperty("states");
        Assert.Equal(1, states.GetProperty("sent").GetInt64());
        Assert.Equal(3, states.GetProperty("queued").GetInt64());
        Assert.Equal(1, gw.Apns.Requests.Count(r => tokens.Contains(r.Token)));
    }

    [Fact]
    public async Task DeadLetter_RequeuedFromConsole_IsDelivered()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        using (var put = await gw.Client.PutAsync("v1/admin/settings", ConsoleHarness.Json("""{"retry":{"maxAttempts":2,"initialDelay":"00:00:00.050","maxDelay":"00:00:00.100"}}"""), ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        var token = Token(3, 1);
        gw.Apns.Script(token, (503, "ServiceUnavailable"), (503, "ServiceUnavailable"));
        var request = await SendAsync(gw.Client, "priority", [token], ct);
        await WaitForStatesAsync(gw, request, s => s.GetProperty("dead").GetInt64() == 1, ct);
        var deadId = (await gw.GetJsonAsync("v1/admin/dead", ct)).GetProperty("items")[0].GetProperty("id").GetInt64();

        using var browser = Browser.Start(nameof(DeadLetter_RequeuedFromConsole_IsDelivered));
        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.Find("nav").Displayed, "sign-in");
        browser.Open(gw.BaseUrl + "/#/dead");
        var box = browser.Until(() => browser.TryFind("dead-" + deadId), "the dead letter in the list");
        var row = browser.Driver.FindElement(By.CssSelector($"tr[data-id='{deadId}']"));
        Assert.Contains("ServiceUnavailable", row.Text, StringComparison.Ordinal);
        box.SendKeys(Keys.Space); // select it with the keyboard
        Assert.True(box.Selected);
        browser.Screenshot("selected");
        browser.Find("dead-requeue").Click();

        browser.Until(() => browser.Find("status").Text.Contains("Requeued 1", StringComparison.Ordinal), "the requeue confirmation");
        await WaitForStatesAsync(gw, request, s => s.GetProperty("sent").GetInt64() == 1, ct);
        Assert.Contains(gw.Apns.Requests, r => r.Token == token && r.Accepted);
        browser.Find("dead-refresh").Click();
        browser.Until(() => browser.TryFind("dead-empty"), "the empty dead-letter list");
        Assert.Empty((await gw.GetJsonAsync("v1/admin/dead", ct)).GetProperty("items").EnumerateArray());
        browser.Screenshot("requeued");
    }

    [Fact]
    public async Task TenantKey_SeesOnlyItsOwnScope()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        using var tenant = await gw.Client.PostAsync("v1/tenants", ConsoleHarness.Json("""{"name":"Contoso"}"""), ct);
        var tenantId = (await tenant.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("id").GetString()!;
        using var keyResponse = await gw.Client.PostAsync($"v1/tenants/{tenantId}/keys", ConsoleHarness.Json("{}"), ct);
        var key = (await keyResponse.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("key").GetString()!;
        using var tenantClient = new HttpClient { BaseAddress = gw.Client.BaseAddress };
        tenantClient.DefaultRequestHeaders.Authorization = new("Bearer", key);
        var (registrationId, _) = await gw.RegisterAsync(Token(4, 1), ct, tenantClient);
        var (otherId, _) = await gw.RegisterAsync(Token(4, 2), ct); // the admin's tenant

        using var browser = Browser.Start(nameof(TenantKey_SeesOnlyItsOwnScope));
        browser.SignIn(gw.BaseUrl, key);
        browser.Until(() => browser.Find("nav").Displayed, "sign-in with a tenant key");
        Assert.Equal("tenant key", browser.Find("role").Text);
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("[data-unavailable]")).Count > 0, "the dashboard's admin-only notice");
        browser.Screenshot("dashboard");

        browser.Open(gw.BaseUrl + "/#/registrations?id=" + registrationId);
        browser.Until(() => browser.TryFind("registration-status")?.Text == "active", "its own registration");
        browser.Screenshot("own-registration");

        browser.Open(gw.BaseUrl + "/#/registrations?id=" + otherId);
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#registration-result .error")).FirstOrDefault()?.Text.Contains("No registration", StringComparison.Ordinal), "another tenant's registration refused");

        browser.Open(gw.BaseUrl + "/#/settings");
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("[data-unavailable]")).Count > 0, "the settings' admin-only notice");
        Assert.Null(browser.TryFind("settings-form"));
    }

    [Fact]
    public async Task Credentials_UploadedFromConsole_AreListedWithMetadataOnly()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        using var tenant = await gw.Client.PostAsync("v1/tenants", ConsoleHarness.Json("""{"name":"Fabrikam"}"""), ct);
        var tenantId = (await tenant.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("id").GetString()!;
        var keyFile = Path.Combine(gw.Directory, "AuthKey_KEY1234567.p8");
        await File.WriteAllTextAsync(keyFile, gw.SigningKeyPem, ct);

        using var browser = Browser.Start(nameof(Credentials_UploadedFromConsole_AreListedWithMetadataOnly));
        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.Find("nav").Displayed, "sign-in");
        browser.Open(gw.BaseUrl + "/#/credentials");
        var tenantInput = browser.Until(() => browser.TryFind("tenant-id"), "the tenant field");
        tenantInput.SendKeys(tenantId + Keys.Enter);
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#list-body [data-empty]")).Count > 0, "an empty credential list");

        browser.Find("cred-team").SendKeys("TEAM123456");
        browser.Find("cred-key-id").SendKeys("KEY1234567");
        browser.Find("cred-p8").SendKeys(keyFile);
        browser.Find("cred-topics").SendKeys(ConsoleHarness.Topic);
        browser.Screenshot("filled");
        browser.Find("cred-upload").Click();
        browser.Until(() => browser.Find("cred-result").Text.StartsWith("Saved apns", StringComparison.Ordinal), "the upload confirmation: " + browser.Find("cred-result").Text);
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#list-body table")).FirstOrDefault()?.Text.Contains("TEAM123456", StringComparison.Ordinal), "the uploaded credential in the list");
        var table = browser.Driver.FindElement(By.CssSelector("#list-body table")).Text;
        Assert.DoesNotContain("PRIVATE KEY", table, StringComparison.Ordinal); // metadata only
        browser.Screenshot("uploaded");

        var listed = await gw.GetJsonAsync($"v1/tenants/{tenantId}/credentials", ct);
        var item = Assert.Single(listed.GetProperty("items").EnumerateArray());
        Assert.Equal("apns", item.GetProperty("platform").GetString());
        Assert.Contains(ConsoleHarness.Topic, item.GetProperty("topics").EnumerateArray().Select(t => t.GetString()));
    }

    [Fact]
    public async Task Phone_AllPagesRenderAccessiblyWithoutHorizontalScroll()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await ConsoleHarness.StartAsync(ct);
        using var browser = Browser.Start(nameof(Phone_AllPagesRenderAccessiblyWithoutHorizontalScroll), 390, 844);
        browser.SignIn(gw.BaseUrl, ConsoleHarness.AdminKey);
        browser.Until(() => browser.Find("nav").Displayed, "sign-in");
        foreach (var page in new[] { "dashboard", "registrations", "settings", "dead", "credentials", "connectors", "nodes" })
        {
            browser.Open(gw.BaseUrl + "/#/" + page);
            browser.Until(() => browser.Driver.ExecuteScript("return document.getElementById('page').dataset.page") as string == page, "page " + page);
            browser.Until(() => browser.Driver.FindElements(By.CssSelector("#page h1")).Count > 0, "the title of " + page);

            // Every form control has a label, and nothing overflows a phone's width.
            var unlabelled = (long)browser.Driver.ExecuteScript(
                "return [...document.querySelectorAll('#page input, #page select')].filter(e => !e.getAttribute('aria-label') && !document.querySelector('label[for=\"' + e.id + '\"]')).length")!;
            Assert.Equal(0L, unlabelled);
            var overflow = (bool)browser.Driver.ExecuteScript("return document.documentElement.scrollWidth > window.innerWidth + 1")!;
            Assert.False(overflow, page + " scrolls sideways on a phone");
            browser.Screenshot(page);
        }

        // The last page (nodes) shows what the API answered, or says plainly that this server lacks it; never an error.
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#list-body table, #list-body [data-unavailable], #list-body [data-empty]")).Count > 0, "the nodes list or its notice");
        Assert.DoesNotContain(browser.Driver.FindElements(By.CssSelector("#page .error")), e => e.Text.Length > 0);
    }
}
