using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Herald.Server.Tests;

/// <summary>
/// A real Dovecot (the Debian packages test.sh installs), run in the foreground as a child of the test from a
/// configuration in a temporary folder: IMAP on a free loopback port, its own base_dir and state_dir, a static user
/// database whose mail belongs to <c>nobody</c>, the notify and push_notification plugins with the OX driver pointed at
/// Herald, and the METADATA dictionary the driver reads. Follows the recipe in /work/shared/dovecot/README.md.
/// Anything that keeps it from running throws with the reason and Dovecot's log: a test on it fails, never skips.
/// </summary>
public sealed class DovecotTestServer : IAsyncDisposable
{
    public const string Dovecot = "/usr/sbin/dovecot";
    public const string Doveadm = "/usr/bin/doveadm";
    public const string Lda = "/usr/lib/dovecot/dovecot-lda";

    private readonly Process _master;

    private DovecotTestServer(string directory, int imapPort, Process master)
    {
        Directory = directory;
        ImapPort = imapPort;
        _master = master;
    }

    public string Directory { get; }
    public int ImapPort { get; }
    public string ConfigPath => Path.Combine(Directory, "dovecot.conf");
    public string LogPath => Path.Combine(Directory, "dovecot.log");

    /// <summary>Dovecot's log so far.</summary>
    public string Log => File.Exists(LogPath) ? File.ReadAllText(LogPath) : string.Empty;

    /// <summary>Starts Dovecot with the OX push driver sending to <paramref name="pushUrl"/> (userinfo = HTTP Basic).</summary>
    public static async Task<DovecotTestServer> StartAsync(string pushUrl, CancellationToken cancellationToken)
    {
        foreach (var binary in new[] { Dovecot, Doveadm, Lda })
        {
            if (!File.Exists(binary))
            {
                throw new InvalidOperationException($"{binary} is missing: Dovecot is not installed. test.sh installs dovecot-core and dovecot-imapd from Debian (apt-get install -y dovecot-core dovecot-imapd).");
            }
        }

        if (!string.Equals(Environment.UserName, "root", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"The real-Dovecot test runs Dovecot as root (it switches mail access to 'nobody'); this test runs as '{Environment.UserName}'.");
        }

        var directory = Path.Combine(Path.GetTempPath(), "herald-dovecot-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(Path.Combine(directory, "home"));
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("The real-Dovecot test runs on Linux (Debian's Dovecot packages).");
        }

        File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        await RunAsync("/bin/chown", ["nobody:nogroup", Path.Combine(directory, "home")], null, cancellationToken);

        var port = FreePort();
        var server = (DovecotTestServer?)null;
        WriteConfig(directory, port, pushUrl);
        var master = Process.Start(new ProcessStartInfo(Dovecot) { ArgumentList = { "-F", "-c", Path.Combine(directory, "dovecot.conf") }, RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false })
            ?? throw new InvalidOperationException("dovecot did not start.");
        server = new DovecotTestServer(directory, port, master);
        try
        {
            await server.WaitForImapAsync(cancellationToken);
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>Points the push driver at another URL (dovecot-lda reads the configuration on every delivery).</summary>
    public void SetPushUrl(string pushUrl) => WriteConfig(Directory, ImapPort, pushUrl);

    /// <summary>Sets the METADATA key without which the OX driver sends nothing for the user.</summary>
    public Task SetPushMetadataAsync(string user, CancellationToken cancellationToken)
        => RunAsync(Doveadm, ["-c", ConfigPath, "mailbox", "metadata", "set", "-u", user, "-s", "", "/private/vendor/vendor.dovecot/http-notify", "user=" + user], null, cancellationToken);

    /// <summary>Delivers a message with dovecot-lda (which triggers the push; <c>doveadm save</c> would not).</summary>
    public Task<string> DeliverAsync(string user, string message, CancellationToken cancellationToken)
        => RunAsync(Lda, ["-c", ConfigPath, "-d", user, "-f", "sender@example.org"], message, cancellationToken);

    /// <summary>A message with RFC 2047 encoded From and Subject.</summary>
    public static string Message(string fromHeader, string subjectHeader, int n) => string.Create(CultureInfo.InvariantCulture, $"""
        From: {fromHeader}
        To: alice@example.org
        Subject: {subjectHeader}
        Message-ID: <herald-test-{n}-{Guid.NewGuid():N}@example.org>
        Date: Mon, 23 Nov 2026 10:00:00 +0000
        MIME-Version: 1.0
        Content-Type: text/plain; charset=utf-8

        The body text, which Herald must never store.

        """).ReplaceLineEndings("\r\n");

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_master.HasExited)
            {
                _master.Kill(entireProcessTree: true);
                await _master.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
            }
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
        {
            // Already gone.
        }

        _master.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left for the OS to clean.
        }
    }

    private static void WriteConfig(string directory, int port, string pushUrl)
    {
        var config = $$"""
            base_dir = {{directory}}/run
            state_dir = {{directory}}/state
            log_path = {{directory}}/dovecot.log
            ssl = no
            protocols = imap
            listen = 127.0.0.1
            disable_plaintext_auth = no
            service imap-login {
              inet_listener imap {
                port = {{port}}
              }
              inet_listener imaps {
                port = 0
              }
            }
            passdb {
              driver = static
              args = password=pass
            }
            userdb {
              driver = static
              args = uid=nobody gid=nogroup home={{directory}}/home/%u
            }
            mail_location = maildir:~/Maildir
            mail_plugins = $mail_plugins notify push_notification
            mail_attribute_dict = file:%h/dovecot-attributes
            protocol imap {
              imap_metadata = yes
            }
            plugin {
              push_notification_driver = ox:url={{pushUrl}}
            }
            """;
        var path = Path.Combine(directory, "dovecot.conf");
        File.WriteAllText(path + ".tmp", config + "\n");
        File.Move(path + ".tmp", path, overwrite: true);
    }

    private async Task WaitForImapAsync(CancellationToken cancellationToken)
    {
        for (var i = 0; i < 100; i++)
        {
            if (_master.HasExited)
            {
                var stderr = await _master.StandardError.ReadToEndAsync(cancellationToken);
                throw new InvalidOperationException($"dovecot exited with {_master.ExitCode}: {stderr}\n{Log}");
            }

            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, ImapPort, cancellationToken);
                using var stream = client.GetStream();
                var buffer = new byte[256];
                var read = await stream.ReadAsync(buffer, cancellationToken);
                if (Encoding.ASCII.GetString(buffer, 0, read).StartsWith("* OK", StringComparison.Ordinal))
                {
                    return;
                }
            }
            catch (SocketException)
            {
                // Not listening yet.
            }

            await Task.Delay(100, cancellationToken);
        }

        throw new InvalidOperationException("dovecot did not answer IMAP on 127.0.0.1:" + ImapPort + " within 10 s.\n" + Log);
    }

    private static async Task<string> RunAsync(string file, IEnumerable<string> arguments, string? stdin, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = stdin is not null, UseShellExecute = false };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException(file + " did not start.");
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
            process.StandardInput.Close();
        }

        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', info.ArgumentList)} exited with {process.ExitCode}: {await stderr}{await stdout}");
        }

        return await stdout + await stderr;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
