using System.Text;
using Herald.Core.Notifications;
using Herald.Providers.Apns;
using Xunit;

namespace Herald.Providers.Tests;

public sealed class ApnsPayloadTests
{
    private static string Build(NotificationContent content)
    {
        var bytes = ApnsPayload.Build(content, out var size);
        Assert.NotNull(bytes);
        Assert.Equal(size, bytes.Length);
        return Encoding.UTF8.GetString(bytes);
    }

    [Fact]
    public void Build_Badge_IsApsBadgeOnly()
        => Assert.Equal("{\"aps\":{\"badge\":12}}", Build(new NotificationContent { Kind = PushKind.Badge, Badge = 12 }));

    [Fact]
    public void Build_BadgeZero_ClearsTheBadge()
        => Assert.Equal("{\"aps\":{\"badge\":0}}", Build(new NotificationContent { Kind = PushKind.Badge, Badge = 0 }));

    [Fact]
    public void Build_Alert_HasTitleBodyBadgeSound()
        => Assert.Equal(
            "{\"aps\":{\"alert\":{\"title\":\"T\",\"body\":\"B\"},\"badge\":2,\"sound\":\"default\"}}",
            Build(new NotificationContent { Kind = PushKind.Alert, Title = "T", Body = "B", Badge = 2, Sound = "default" }));

    [Fact]
    public void Build_AlertWithoutOptionalFields_OmitsThem()
        => Assert.Equal("{\"aps\":{\"alert\":{\"body\":\"B\"}}}", Build(new NotificationContent { Kind = PushKind.Alert, Body = "B" }));

    [Fact]
    public void Build_AlertText_IsEscapedForJsonButKeepsUtf8()
        => Assert.Equal(
            "{\"aps\":{\"alert\":{\"body\":\"\\\"Zoë\\\" <a>\\n\"}}}",
            Build(new NotificationContent { Kind = PushKind.Alert, Body = "\"Zoë\" <a>\n" }));

    [Fact]
    public void Build_Background_IsContentAvailableOnly()
        => Assert.Equal("{\"aps\":{\"content-available\":1}}", Build(new NotificationContent { Kind = PushKind.Background, Badge = 4 }));

    [Fact]
    public void Build_Mdm_IsExactlyThePushMagic()
        => Assert.Equal(
            "{\"mdm\":\"5E9B1C3A-0000-4000-8000-000000000001\"}",
            Build(new NotificationContent
            {
                Kind = PushKind.Mdm,
                PushMagic = "5E9B1C3A-0000-4000-8000-000000000001",
                Data = new Dictionary<string, string> { ["ignored"] = "x" },
            }));

    [Fact]
    public void Build_Data_AreTopLevelKeysNotInsideAps()
        => Assert.Equal(
            "{\"aps\":{\"badge\":1},\"folder\":\"inbox\",\"account\":\"a1\"}",
            Build(new NotificationContent
            {
                Kind = PushKind.Badge,
                Badge = 1,
                Data = new Dictionary<string, string> { ["folder"] = "inbox", ["aps"] = "dropped", ["account"] = "a1" },
            }));

    [Fact]
    public void Build_DataThroughAnotherDictionaryType_IsWritten()
        => Assert.Equal(
            "{\"aps\":{\"badge\":1},\"k\":\"v\"}",
            Build(new NotificationContent
            {
                Kind = PushKind.Badge,
                Badge = 1,
                Data = new SortedDictionary<string, string> { ["k"] = "v" }.AsReadOnly(),
            }));

    [Fact]
    public void Build_Over4096Bytes_ReturnsNullWithSize()
    {
        var bytes = ApnsPayload.Build(new NotificationContent { Kind = PushKind.Alert, Body = new string('x', 5000) }, out var size);

        Assert.Null(bytes);
        Assert.True(size > ApnsPayload.MaxBytes);
    }

    [Fact]
    public void Build_ReusedAcrossCalls_DoesNotLeakPreviousContent()
    {
        Build(new NotificationContent { Kind = PushKind.Alert, Body = new string('x', 3000) });

        Assert.Equal("{\"aps\":{\"badge\":1}}", Build(new NotificationContent { Kind = PushKind.Badge, Badge = 1 }));
    }
}
