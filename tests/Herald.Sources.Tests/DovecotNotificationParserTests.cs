using System.Text;
using Herald.Sources.Dovecot;
using Xunit;

namespace Herald.Sources.Tests;

/// <summary>The OX driver's JSON, as Dovecot 2.3.19.1 really sends it (captured with the recipe in /work/shared/dovecot).</summary>
public sealed class DovecotNotificationParserTests
{
    /// <summary>A body captured from dovecot-lda delivering a message with encoded From and Subject.</summary>
    public const string Captured =
        """{"user":"alice","event":"messageNew","folder":"INBOX","imap-uidvalidity":1795469558,"imap-uid":1,"from":"=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>","subject":"=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=","snippet":"Hello body text here","unseen":1}""";

    private static DovecotNotification Parse(string json)
    {
        Assert.True(DovecotNotificationParser.TryParse(Encoding.UTF8.GetBytes(json), out var n, out var error), error);
        return n!;
    }

    private static string Reject(string json)
    {
        Assert.False(DovecotNotificationParser.TryParse(Encoding.UTF8.GetBytes(json), out var n, out var error));
        Assert.Null(n);
        return error!;
    }

    [Fact]
    public void Captured_ParsesEveryField_AndDecodesRfc2047()
    {
        var n = Parse(Captured);
        Assert.Equal("alice", n.User);
        Assert.Equal("messageNew", n.Event);
        Assert.True(n.IsMessageNew);
        Assert.Equal("INBOX", n.Folder);
        Assert.Equal(1795469558, n.UidValidity);
        Assert.Equal(1, n.Uid);
        Assert.Equal(1, n.Unseen);
        Assert.Equal("Jörg Müller", n.From);
        Assert.Equal("Grüße aus Köln", n.Subject);
    }

    [Fact]
    public void DocumentedCapitalisedEvent_IsMessageNew()
        => Assert.True(Parse("""{"user":"bob","event":"MessageNew","unseen":4}""").IsMessageNew);

    [Fact]
    public void OtherEvents_ParseButAreNotNewMail()
    {
        var n = Parse("""{"user":"bob","event":"messageRead","folder":"INBOX"}""");
        Assert.False(n.IsMessageNew);
        Assert.Null(n.Unseen);
    }

    [Theory]
    [InlineData("alice@example.org", "alice@example.org")]
    [InlineData("\"Smith, Ann\" <ann@example.org>", "Smith, Ann")]
    [InlineData("=?iso-8859-1?q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>", "André Pirard")]
    [InlineData("=?ISO-8859-1?B?SvZyZw==?= <j@example.org>", "Jörg")]
    [InlineData("<bare@example.org>", "bare@example.org")]
    public void Sender_DisplayNameOrAddress(string raw, string expected)
        => Assert.Equal(expected, DovecotNotificationParser.DecodeSender(raw));

    [Theory]
    [InlineData("=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab")] // whitespace between adjacent encoded words is dropped (RFC 2047 §6.2)
    [InlineData("=?UTF-8?B?5pel5pys6Kqe?= test", "日本語 test")]
    [InlineData("plain subject", "plain subject")]
    [InlineData("line\r\n folded", "line folded")]
    [InlineData("=?UTF-8?Q?=E2=82?= =?UTF-8?Q?=AC?=", "€")] // a character split across two encoded words
    public void Subject_Decoded(string raw, string expected)
        => Assert.Equal(expected, DovecotNotificationParser.DecodeSubject(raw));

    [Fact]
    public void LongSubject_IsCutForDisplay()
        => Assert.Equal(DovecotNotificationParser.MaxDisplayLength, DovecotNotificationParser.DecodeSubject(new string('x', 5000)).Length);

    [Fact]
    public void UnknownFields_AndNestedValues_AreSkipped()
    {
        var n = Parse("""{"user":"u","event":"messageNew","future":{"a":[1,2]},"unseen":2}""");
        Assert.Equal(2, n.Unseen);
    }

    [Fact]
    public void Snippet_IsNeverKept()
    {
        var n = Parse(Captured);
        Assert.DoesNotContain("Hello body", n.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "not valid JSON")]
    [InlineData("[]", "JSON object")]
    [InlineData("{\"user\":\"a\",", "not valid JSON")]
    [InlineData("{\"event\":\"messageNew\"}", "'user' is required")]
    [InlineData("{\"user\":\"a\"}", "'event' is required")]
    [InlineData("{\"user\":5,\"event\":\"messageNew\"}", "'user' must be a string")]
    [InlineData("{\"user\":\"a\",\"event\":\"messageNew\",\"unseen\":-1}", "'unseen' must be a whole number")]
    [InlineData("{\"user\":\"a\",\"event\":\"messageNew\",\"imap-uid\":1.5}", "'imap-uid' must be a whole number")]
    [InlineData("{\"user\":\"a\",\"event\":\"messageNew\"} {}", "not valid JSON")]
    [InlineData("{\"user\":\"a\",\"event\":\"messageNew\",\"x\":[[[[[1]]]]]}", "not valid JSON")]
    public void Malformed_IsRejectedWithAReason(string json, string expected)
        => Assert.Contains(expected, Reject(json), StringComparison.Ordinal);

    [Fact]
    public void Oversized_IsRejected()
    {
        var json = "{\"user\":\"a\",\"event\":\"messageNew\",\"snippet\":\"" + new string('x', DovecotNotificationParser.MaxBodyBytes) + "\"}";
        Assert.Contains("larger than", Reject(json), StringComparison.Ordinal);
    }

    [Fact]
    public void OverlongUser_IsRejected()
        => Assert.Contains("'user' is longer", Reject("{\"user\":\"" + new string('u', 600) + "\",\"event\":\"messageNew\"}"), StringComparison.Ordinal);
}

public sealed class InvalidUtf8ParserTests
{
    private static byte[] WithInvalidUtf8(string json, string marker)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(json).ToList();
        var at = System.Text.Encoding.UTF8.GetBytes(json[..json.IndexOf(marker, StringComparison.Ordinal)]).Length;
        bytes.InsertRange(at, new byte[] { 0xC3, 0x28, 0xFF });
        return [.. bytes];
    }

    [Xunit.Fact]
    public void Dovecot_InvalidUtf8InAString_IsAClearError()
    {
        var body = WithInvalidUtf8("""{"user":"carol","event":"MessageNew","folder":"INBOX","subject":"MARKhello","unseen":1}""", "MARK");
        Xunit.Assert.False(Herald.Sources.Dovecot.DovecotNotificationParser.TryParse(body, out _, out var error));
        Xunit.Assert.Contains("UTF-8", error, StringComparison.Ordinal);
    }

    [Xunit.Fact]
    public void Graph_InvalidUtf8InAString_IsAClearError()
    {
        var body = WithInvalidUtf8("""{"value":[{"subscriptionId":"s","clientState":"c","changeType":"created","resource":"Users/u/MARKMessages/m"}]}""", "MARK");
        Xunit.Assert.False(Herald.Sources.Graph.GraphNotificationParser.TryParse(body, out _, out var error));
        Xunit.Assert.Contains("UTF-8", error, StringComparison.Ordinal);
    }
}
