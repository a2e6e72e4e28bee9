using System.Security.Cryptography;
using Herald.Core.Security;
using Xunit;

namespace Herald.Core.Tests;

public sealed class SecretBoxTests
{
    [Fact]
    public void Seal_ThenOpen_RoundTripsAndHidesThePlaintext()
    {
        var box = SecretBox.CreateEphemeral();
        var sealedValue = box.Seal("alice@contoso.com", "mailbox");

        Assert.StartsWith("hs1.k1.", sealedValue, StringComparison.Ordinal);
        Assert.DoesNotContain("alice", sealedValue, StringComparison.OrdinalIgnoreCase);
        Assert.Equal("alice@contoso.com", box.Open(sealedValue, "mailbox"));
        Assert.NotEqual(sealedValue, box.Seal("alice@contoso.com", "mailbox")); // a fresh nonce every time
    }

    [Fact]
    public void Open_WithAnotherPurpose_Fails()
    {
        var box = SecretBox.CreateEphemeral();
        var sealedValue = box.Seal("secret", "credential:apns");

        Assert.ThrowsAny<CryptographicException>(() => box.Open(sealedValue, "mailbox"));
    }

    [Fact]
    public void Open_TamperedOrForeignValue_Fails()
    {
        var box = SecretBox.CreateEphemeral();
        var sealedValue = box.Seal("secret", "p");
        var tampered = sealedValue[..^2] + (sealedValue[^2] == 'A' ? "B" : "A") + sealedValue[^1];

        Assert.ThrowsAny<CryptographicException>(() => box.Open(tampered, "p"));
        Assert.ThrowsAny<CryptographicException>(() => SecretBox.CreateEphemeral().Open(sealedValue, "p"));
        Assert.ThrowsAny<CryptographicException>(() => box.Open("not sealed", "p"));
        Assert.ThrowsAny<CryptographicException>(() => box.Open("hs1.k1.!!!", "p"));
    }

    [Fact]
    public void Rotation_NewKeySealsOldKeyStillOpensAndHashesStayTheSame()
    {
        var old = SecretKey.Generate("k1");
        var before = new SecretBox([old]);
        var sealedBefore = before.Seal("password", "connector");
        var hashBefore = before.MailboxHash("Alice@Contoso.com ");

        var rotated = new SecretBox([SecretKey.Generate("k2"), old]);

        Assert.Equal("password", rotated.Open(sealedBefore, "connector"));
        Assert.True(rotated.NeedsReseal(sealedBefore));
        var sealedAfter = rotated.Seal("password", "connector");
        Assert.StartsWith("hs1.k2.", sealedAfter, StringComparison.Ordinal);
        Assert.False(rotated.NeedsReseal(sealedAfter));
        Assert.Equal(hashBefore, rotated.MailboxHash("alice@contoso.com"));
    }

    [Fact]
    public void KeyedHash_DependsOnKeyAndPurpose()
    {
        var box = SecretBox.CreateEphemeral();

        Assert.Equal(box.KeyedHash("x", "a"), box.KeyedHash("x", "a"));
        Assert.NotEqual(box.KeyedHash("x", "a"), box.KeyedHash("x", "b"));
        Assert.NotEqual(box.KeyedHash("x", "a"), SecretBox.CreateEphemeral().KeyedHash("x", "a"));
        Assert.Equal(32, box.MailboxHash("bob@example.com").Length);
    }

    [Fact]
    public void KeyRing_ParseAndFormat_RoundTrip_AndRejectBadLines()
    {
        var keys = new[] { SecretKey.Generate("k2"), SecretKey.Generate("k1") };
        var parsed = SecretKeyRing.Parse(SecretKeyRing.Format(keys));

        Assert.Equal(["k2", "k1"], parsed.Select(k => k.Id));
        Assert.Equal(keys[0].Material.ToArray(), parsed[0].Material.ToArray());
        Assert.Throws<FormatException>(() => SecretKeyRing.Parse("# only a comment\n"));
        Assert.Throws<FormatException>(() => SecretKeyRing.Parse("k1 not-base64!"));
        Assert.Throws<FormatException>(() => SecretKeyRing.Parse("k1 " + Convert.ToBase64String(new byte[16])));
        Assert.Throws<ArgumentException>(() => new SecretBox([keys[0], keys[0]]));
    }
}
