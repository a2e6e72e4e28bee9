using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Herald.Core.Events;
using Herald.Core.Notifications;
using Herald.Core.Planning;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Microsoft.Extensions.Options;
using Xunit;

namespace Herald.Core.Tests.Security;

/// <summary>The sealed preview of style preview-encrypted: plaintext format, truncation before sealing, and the planner's part.</summary>
public sealed class EncryptedPreviewTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 23, 12, 0, 0, TimeSpan.Zero);

    private static readonly JsonSerializerOptions Reflection = new() { TypeInfoResolver = new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver() };

    private static JsonElement Open(NotificationContent content, HpkeKeyPair device, string registrationId)
    {
        var sealedPreview = Assert.IsType<SealedPreview>(content.Sealed);
        var plaintext = Hpke.Open(Base64Url.DecodeFromChars(sealedPreview.Enc), device.PrivateKey, Encoding.UTF8.GetBytes(registrationId), [], Base64Url.DecodeFromChars(sealedPreview.Ciphertext));
        return JsonDocument.Parse(plaintext).RootElement.Clone();
    }

    [Fact]
    public void Seal_CarriesEveryPreviewField_AndOnlyTheDeviceKeyWithTheRegistrationIdOpensIt()
    {
        var device = Hpke.GenerateKeyPair();
        var content = new NotificationContent { Kind = PushKind.Alert, Body = "New mail", Badge = 4, UsePreview = true, EncryptTo = device.PublicKey };
        var preview = new MailPreview("Quarterly numbers \"Q3\"", "Bob Example") { FromAddress = "bob@contoso.com", MessageRef = "AAMkItem1=" };

        var sealedContent = EncryptedPreview.Seal(content, "reg_1", preview);

        Assert.Equal("New mail", sealedContent.Body); // the neutral text stays what Apple and Google see
        Assert.Null(sealedContent.Title);
        var json = Open(sealedContent, device, "reg_1");
        Assert.Equal(1, json.GetProperty("v").GetInt32());
        Assert.Equal("Bob Example", json.GetProperty("from").GetString());
        Assert.Equal("bob@contoso.com", json.GetProperty("fromAddress").GetString());
        Assert.Equal("Quarterly numbers \"Q3\"", json.GetProperty("subject").GetString());
        Assert.Equal("inbox", json.GetProperty("folder").GetString());
        Assert.Equal(4, json.GetProperty("unread").GetInt32());
        Assert.Equal("AAMkItem1=", json.GetProperty("ref").GetString());
        Assert.False(json.TryGetProperty("truncated", out _));

        var sealedPreview = sealedContent.Sealed!;
        Assert.DoesNotContain("Quarterly", sealedPreview.Ciphertext, StringComparison.Ordinal);
        Assert.ThrowsAny<CryptographicException>(() => Open(sealedContent, Hpke.GenerateKeyPair(), "reg_1"));
        Assert.ThrowsAny<CryptographicException>(() => Open(sealedContent, device, "reg_2"));
    }

    [Fact]
    public void Seal_SealedPreviewIsNeverSerialisedWithTheQueuedContent()
    {
        var device = Hpke.GenerateKeyPair();
        var content = EncryptedPreview.Seal(
            new NotificationContent { Kind = PushKind.Alert, Body = "New mail", UsePreview = true, EncryptTo = device.PublicKey },
            "reg_1",
            new MailPreview("Secret subject", "Eve"));

        var json = JsonSerializer.Serialize(content, Reflection);

        Assert.NotNull(content.Sealed);
        Assert.DoesNotContain(content.Sealed!.Ciphertext, json, StringComparison.Ordinal);
        Assert.DoesNotContain("sealed", json, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("x")]
    [InlineData("日本語のとても長い件名")]
    [InlineData("👩‍👩‍👧‍👦🇯🇵")]
    [InlineData("e\u0301")]
    public void Plaintext_ThousandCharacterSubject_IsCutOnAGraphemeBoundaryWithinTheLimit(string unit)
    {
        var builder = new StringBuilder();
        while (builder.Length < 1000)
        {
            builder.Append(unit);
        }

        var subject = builder.ToString();
        var plaintext = EncryptedPreview.Plaintext(new MailPreview(subject, "Bob") { FromAddress = "bob@contoso.com" }, 3, out var truncated);

        Assert.True(plaintext.Length <= EncryptedPreview.MaxPlaintextBytes);
        var json = JsonDocument.Parse(plaintext).RootElement;
        var shown = json.GetProperty("subject").GetString()!;
        if (Encoding.UTF8.GetByteCount(subject) + 100 > EncryptedPreview.MaxPlaintextBytes)
        {
            Assert.True(truncated);
            Assert.True(json.GetProperty("truncated").GetBoolean());
            Assert.EndsWith("…", shown, StringComparison.Ordinal);
            var kept = shown[..^1];
            Assert.StartsWith(kept, subject, StringComparison.Ordinal);
            Assert.Contains(kept.Length, GraphemeEnds(subject)); // whole graphemes only: never half a surrogate pair, ZWJ sequence or accent
            Assert.True(plaintext.Length > EncryptedPreview.MaxPlaintextBytes - 64, "the cut keeps as much as fits");
        }
        else
        {
            Assert.False(truncated);
            Assert.Equal(subject, shown);
        }
    }

    [Fact]
    public void Plaintext_LoneSurrogatesAndHugeSenderFields_StillGiveValidBoundedJson()
    {
        var preview = new MailPreview("bad \ud800 surrogate", new string('"', 5000)) { FromAddress = new string('\u0001', 5000), MessageRef = new string('r', 5000) };

        var plaintext = EncryptedPreview.Plaintext(preview, null, out var truncated);

        Assert.True(truncated);
        Assert.True(plaintext.Length <= EncryptedPreview.MaxPlaintextBytes);
        var json = JsonDocument.Parse(plaintext).RootElement;
        Assert.Equal("bad \uFFFD surrogate", json.GetProperty("subject").GetString());
        Assert.Equal(128, json.GetProperty("from").GetString()!.Length);
        Assert.False(json.TryGetProperty("ref", out _)); // a cut reference is dropped, never sent half
        Assert.False(json.TryGetProperty("unread", out _));
    }

    [Fact]
    public void Seal_WithoutAUsableKey_LeavesTheNeutralAlert()
    {
        var content = new NotificationContent { Kind = PushKind.Alert, Body = "New mail", UsePreview = true, EncryptTo = new byte[12] };

        Assert.Same(content, EncryptedPreview.Seal(content, "reg_1", new MailPreview("s", "f")));

        var offCurve = Hpke.GenerateKeyPair().PublicKey;
        offCurve[64] ^= 1;
        var result = EncryptedPreview.Seal(content with { EncryptTo = offCurve }, "reg_1", new MailPreview("s", "f"));
        Assert.Null(result.Sealed);
    }

    [Fact]
    public void Planner_PreviewEncrypted_QueuesTheKeyNotThePreview_AndTheCacheHoldsThePreviewInMemory()
    {
        var device = Hpke.GenerateKeyPair();
        var cache = new PreviewCache();
        var planner = new MailEventPlanner(Options.Create(new PlannerOptions()), cache);
        var registration = Registration(NotificationStyle.PreviewEncrypted, device.PublicKey);

        var decision = planner.Plan(registration, Item(new MailPreview("Quarterly numbers", "Bob"), new MailEvent { Kind = MailEventKind.NewMail, ParentFolderId = "inbox" }));

        var content = Assert.IsType<NewNotification>(decision.Notification).Content;
        Assert.Equal(PushKind.Alert, content.Kind);
        Assert.True(content.UsePreview);
        Assert.Equal(device.PublicKey, content.EncryptTo);
        Assert.Equal("New mail", content.Body);
        Assert.Null(content.Title);
        Assert.Null(content.Sealed);
        Assert.True(cache.TryGet("reg_e", Now, out var held));
        Assert.Equal("Quarterly numbers", held.Subject);
    }

    [Fact]
    public void Planner_PreviewEncrypted_WithoutAPreviewFromTheSource_QueuesTheNeutralAlertOnly()
    {
        var planner = new MailEventPlanner(Options.Create(new PlannerOptions()), new PreviewCache());
        var decision = planner.Plan(Registration(NotificationStyle.PreviewEncrypted, Hpke.GenerateKeyPair().PublicKey), Item(null, new MailEvent { Kind = MailEventKind.NewMail }));

        var content = Assert.IsType<NewNotification>(decision.Notification).Content;
        Assert.Equal(PushKind.Alert, content.Kind);
        Assert.False(content.UsePreview);
        Assert.Null(content.EncryptTo);
        Assert.Equal("New mail", content.Body);
    }

    private static HashSet<int> GraphemeEnds(string value)
    {
        var ends = new HashSet<int> { 0 };
        for (var i = 0; i < value.Length;)
        {
            i += System.Globalization.StringInfo.GetNextTextElementLength(value, i);
            ends.Add(i);
        }

        return ends;
    }

    private static Registration Registration(NotificationStyle style, byte[]? key) => new()
    {
        Id = "reg_e",
        TenantId = "default",
        Platform = Platform.Apns,
        Token = "aabbccddeeff00112233445566778899",
        Topic = "com.example.mail",
        Source = SourceKind.Dovecot,
        Style = style,
        EncryptionKey = key,
        CreatedAt = Now,
    };

    private static IngestItem Item(MailPreview? preview, params MailEvent[] events) => new()
    {
        Route = IngestRoute.ForMailbox("default", "imap", [9, 9]),
        Notifications = [new MailboxNotification { Events = events }],
        ReceivedAt = Now,
        Preview = preview,
    };
}
