using System.Buffers.Text;
using System.Text;
using System.Text.Json;
using Herald.Core.Notifications;
using Herald.Core.Planning;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Providers.Apns;
using Herald.Providers.Fcm;
using Herald.Providers.Wns;
using Xunit;

namespace Herald.Providers.Tests;

/// <summary>Style preview-encrypted on the wire: APNs mutable alert with "hx", FCM data-only, WNS raw; always under the limits.</summary>
public sealed class SealedPreviewPayloadTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 23, 12, 0, 0, TimeSpan.Zero);

    private static (NotificationContent Content, HpkeKeyPair Device) Sealed(string subject, string body = "New mail")
    {
        var device = Hpke.GenerateKeyPair();
        var content = new NotificationContent { Kind = PushKind.Alert, Body = body, Badge = 12345, Sound = "default", UsePreview = true, EncryptTo = device.PublicKey };
        return (EncryptedPreview.Seal(content, "reg_0190f0c2a1b27c3d9e8f0a1b2c3d4e5f", new MailPreview(subject, "Bob Example") { FromAddress = "bob@contoso.com", MessageRef = "AAMkAGI2TG93AAA=" }), device);
    }

    private static string Subject(int chars) => string.Concat(Enumerable.Repeat("件名🇯🇵e\u0301\"\\", chars / 8 + 1))[..chars];

    private static JsonElement OpenHx(JsonElement hx, HpkeKeyPair device)
    {
        Assert.Equal(1, hx.GetProperty("v").GetInt32());
        var plaintext = Hpke.Open(
            Base64Url.DecodeFromChars(hx.GetProperty("enc").GetString()),
            device.PrivateKey,
            "reg_0190f0c2a1b27c3d9e8f0a1b2c3d4e5f"u8,
            [],
            Base64Url.DecodeFromChars(hx.GetProperty("ct").GetString()));
        return JsonDocument.Parse(plaintext).RootElement.Clone();
    }

    [Fact]
    public void Apns_SealedAlert_IsMutableWithNeutralTextAndHx()
    {
        var (content, device) = Sealed("Quarterly numbers");

        var bytes = ApnsPayload.Build(content, out var size);

        Assert.NotNull(bytes);
        var root = JsonDocument.Parse(bytes).RootElement;
        var aps = root.GetProperty("aps");
        Assert.Equal(1, aps.GetProperty("mutable-content").GetInt32());
        Assert.Equal("New mail", aps.GetProperty("alert").GetProperty("body").GetString());
        Assert.False(aps.GetProperty("alert").TryGetProperty("title", out _));
        Assert.DoesNotContain("Quarterly", Encoding.UTF8.GetString(bytes), StringComparison.Ordinal);
        Assert.Equal("Quarterly numbers", OpenHx(root.GetProperty("hx"), device).GetProperty("subject").GetString());
        Assert.Equal(size, bytes.Length);
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(5000)]
    public void AllProviders_HugeSubject_StayUnderTheirLimits_AndStillOpen(int chars)
    {
        // The longest localised fallback and a long FCM token: the worst case of every other field.
        var (content, device) = Sealed(Subject(chars), body: "Nouveau message");
        var fcmToken = "f" + new string('A', 300);

        var apns = ApnsPayload.Build(content, out var apnsSize);
        var fcm = FcmMessage.Build(Claimed(content, fcmToken), Now, out var fcmSize);
        var wns = WnsPayload.Build(content);

        Assert.NotNull(apns);
        Assert.True(apnsSize <= ApnsPayload.MaxBytes, $"APNs payload {apnsSize} bytes");
        Assert.NotNull(fcm);
        Assert.True(fcmSize <= FcmMessage.MaxBytes, $"FCM body {fcmSize} bytes");
        Assert.True(wns.Body.Length <= WnsPayload.MaxBytes, $"WNS body {wns.Body.Length} bytes");

        var plain = OpenHx(JsonDocument.Parse(apns).RootElement.GetProperty("hx"), device);
        Assert.True(plain.GetProperty("truncated").GetBoolean());
        var subject = plain.GetProperty("subject").GetString()!;
        Assert.EndsWith("…", subject, StringComparison.Ordinal);
        Assert.StartsWith(subject[..^1], Subject(chars), StringComparison.Ordinal);
        Assert.Equal("Bob Example", plain.GetProperty("from").GetString());
    }

    [Fact]
    public void Fcm_SealedAlert_IsDataOnlyWithHxAsAJsonString()
    {
        var (content, device) = Sealed("Quarterly numbers");

        var body = FcmMessage.Build(Claimed(content, "fcmToken:APA91b"), Now, out _);

        var message = JsonDocument.Parse(body!).RootElement.GetProperty("message");
        Assert.False(message.TryGetProperty("notification", out _)); // data-only: the app shows the decrypted preview itself
        Assert.False(message.GetProperty("android").TryGetProperty("notification", out _));
        Assert.Equal("high", message.GetProperty("android").GetProperty("priority").GetString());
        var data = message.GetProperty("data");
        Assert.Equal("mail", data.GetProperty("type").GetString());
        Assert.Equal("12345", data.GetProperty("badge").GetString());
        Assert.Equal("New mail", data.GetProperty("fallback").GetString());
        var hx = JsonDocument.Parse(data.GetProperty("hx").GetString()!).RootElement;
        Assert.Equal("bob@contoso.com", OpenHx(hx, device).GetProperty("fromAddress").GetString());
    }

    [Fact]
    public void Wns_SealedAlert_IsARawNotificationWithHx()
    {
        var (content, device) = Sealed("Quarterly numbers");

        var message = WnsPayload.Build(content);

        Assert.Equal(WnsPayload.TypeRaw, message.Type);
        Assert.Equal(WnsPayload.ContentTypeRaw, message.ContentType);
        var root = JsonDocument.Parse(message.Body).RootElement;
        Assert.Equal("New mail", root.GetProperty("fallback").GetString());
        Assert.Equal(12345, root.GetProperty("badge").GetInt32());
        Assert.Equal("AAMkAGI2TG93AAA=", OpenHx(root.GetProperty("hx"), device).GetProperty("ref").GetString());
    }

    [Fact]
    public void UnsealedAlert_IsUnchanged_NoMutableContentNoHx()
    {
        var content = new NotificationContent { Kind = PushKind.Alert, Body = "New mail", UsePreview = true, EncryptTo = Hpke.GenerateKeyPair().PublicKey };

        var apns = Encoding.UTF8.GetString(ApnsPayload.Build(content, out _)!);

        Assert.Equal("{\"aps\":{\"alert\":{\"body\":\"New mail\"}}}", apns);
        Assert.Equal(WnsPayload.TypeToast, WnsPayload.Build(content).Type);
    }

    private static ClaimedNotification Claimed(NotificationContent content, string token) => new()
    {
        Id = 1,
        MessageId = Guid.NewGuid(),
        TenantId = "default",
        RegistrationId = "reg_0190f0c2a1b27c3d9e8f0a1b2c3d4e5f",
        Platform = Platform.Fcm,
        Token = token,
        Topic = "herald-test",
        Content = content,
        CollapseId = "herald-mail",
        ExpiresAt = Now.AddHours(24),
    };
}
