using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using Xunit;

namespace Herald.Console.Tests;

/// <summary>
/// The system Chromium (Debian <c>chromium</c>) driven through the system ChromeDriver (<c>chromium-driver</c>),
/// headless, offline and with a fresh profile. If it cannot start, the test fails with the reason.
/// </summary>
public sealed class Browser : IDisposable
{
    public const string ChromiumPath = "/usr/bin/chromium";
    public const string ChromeDriverPath = "/usr/bin/chromedriver";

    private static readonly TimeSpan DefaultWait = TimeSpan.FromSeconds(20);
    private readonly string _profile;
    private readonly string _testName;
    private int _shots;

    private Browser(ChromeDriver driver, string profile, string testName)
    {
        Driver = driver;
        _profile = profile;
        _testName = testName;
    }

    public ChromeDriver Driver { get; }

    /// <summary>Where screenshots go: <c>artifacts/screenshots</c> under the test output folder.</summary>
    public static string ScreenshotFolder => Path.Combine(AppContext.BaseDirectory, "artifacts", "screenshots");

    public static Browser Start(string testName, int width = 1280, int height = 1000)
    {
        Assert.True(File.Exists(ChromiumPath), $"Chromium is not installed at {ChromiumPath} (Debian package 'chromium'; test.sh installs it).");
        Assert.True(File.Exists(ChromeDriverPath), $"ChromeDriver is not installed at {ChromeDriverPath} (Debian package 'chromium-driver'; test.sh installs it).");
        var profile = Path.Combine(Path.GetTempPath(), "herald-chromium-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(profile);
        var options = new ChromeOptions { BinaryLocation = ChromiumPath };
        options.AddArguments(
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--user-data-dir=" + profile, $"--window-size={width},{height}");
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(ChromeDriverPath)!, Path.GetFileName(ChromeDriverPath));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        try
        {
            var driver = new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
            return new Browser(driver, profile, testName);
        }
        catch (WebDriverException ex)
        {
            service.Dispose();
            Assert.Fail("Chromium could not be started through ChromeDriver: " + ex.Message);
            throw;
        }
    }

    public void Open(string url) => Driver.Navigate().GoToUrl(url);

    public IWebElement Find(string id) => Driver.FindElement(By.Id(id));

    public IWebElement? TryFind(string id)
    {
        var found = Driver.FindElements(By.Id(id));
        return found.Count > 0 ? found[0] : null;
    }

    /// <summary>Polls until <paramref name="condition"/> holds (bounded); fails with <paramref name="what"/> otherwise.</summary>
    public T Until<T>(Func<T?> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultWait);
        Exception? last = null;
        while (true)
        {
            try
            {
                var value = condition();
                if (value is not null && (value is not bool b || b))
                {
                    return value;
                }
            }
            catch (WebDriverException ex)
            {
                last = ex; // stale or not yet rendered: try again
            }

            if (DateTime.UtcNow > deadline)
            {
                Screenshot("timeout");
                throw new TimeoutException($"Timed out waiting for: {what}" + (last is null ? string.Empty : $" (last error: {last.Message})"));
            }

            Thread.Sleep(100);
        }
    }

    public void SignIn(string baseUrl, string key)
    {
        Open(baseUrl + "/");
        var input = Until(() => Find("api-key") is { Displayed: true } e ? e : null, "the sign-in form");
        input.SendKeys(key);
        input.SendKeys(Keys.Enter); // the keyboard, as an operator would
    }

    /// <summary>Saves a PNG under <see cref="ScreenshotFolder"/> and prints its path.</summary>
    public string Screenshot(string step)
    {
        Directory.CreateDirectory(ScreenshotFolder);
        var path = Path.Combine(ScreenshotFolder, $"{_testName}-{++_shots:00}-{step}.png");
        Driver.GetScreenshot().SaveAsFile(path);
        TestContext.Current.TestOutputHelper?.WriteLine("screenshot: " + path);
        System.Console.WriteLine("screenshot: " + path);
        return path;
    }

    public void Dispose()
    {
        try
        {
            Driver.Quit();
        }
        finally
        {
            Driver.Dispose();
            try
            {
                Directory.Delete(_profile, recursive: true);
            }
            catch (IOException)
            {
                // Chromium may still be writing its profile as it exits: the temp folder is cleaned up later.
            }
        }
    }
}
