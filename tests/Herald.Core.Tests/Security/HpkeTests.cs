using System.Security.Cryptography;
using Herald.Core.Security;
using Xunit;
using V = Herald.Core.Tests.Security.Rfc9180Vectors;

namespace Herald.Core.Tests.Security;

/// <summary>Herald's HPKE against RFC 9180 A.3.1 (DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, mode base).</summary>
public sealed class HpkeTests
{
    private static byte[] H(string hex) => Convert.FromHexString(hex);

    private static string Hex(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(bytes);

    [Fact]
    public void DeriveKeyPair_ReproducesTheEphemeralAndRecipientKeysOfTheRfc()
    {
        var e = Hpke.DeriveKeyPair(H(V.IkmE));
        var r = Hpke.DeriveKeyPair(H(V.IkmR));

        Assert.Equal(V.SkEm, Hex(e.PrivateKey));
        Assert.Equal(V.PkEm, Hex(e.PublicKey));
        Assert.Equal(V.SkRm, Hex(r.PrivateKey));
        Assert.Equal(V.PkRm, Hex(r.PublicKey));
    }

    [Fact]
    public void SetupBaseSender_ReproducesEncSharedSecretKeyNonceAndExporterSecret()
    {
        using var context = Hpke.SetupBaseSender(H(V.PkRm), H(V.Info), Hpke.DeriveKeyPair(H(V.IkmE)), out var enc);

        Assert.Equal(V.Enc, Hex(enc));
        Assert.Equal(V.SharedSecret, Hex(context.SharedSecret));
        Assert.Equal(V.Key, Hex(context.Key));
        Assert.Equal(V.BaseNonce, Hex(context.BaseNonce));
        Assert.Equal(V.ExporterSecret, Hex(context.ExporterSecret));
    }

    [Fact]
    public void KeyScheduleContextAndSecret_MatchTheRfcIntermediateValues()
    {
        // key_schedule_context = mode || psk_id_hash || info_hash; secret = LabeledExtract(shared_secret, "secret", "").
        ReadOnlySpan<byte> suite = [(byte)'H', (byte)'P', (byte)'K', (byte)'E', 0x00, 0x10, 0x00, 0x01, 0x00, 0x01];
        var pskIdHash = new byte[32];
        var infoHash = new byte[32];
        Hpke.LabeledExtract(suite, [], "psk_id_hash"u8, [], pskIdHash);
        Hpke.LabeledExtract(suite, [], "info_hash"u8, H(V.Info), infoHash);
        var secret = new byte[32];
        Hpke.LabeledExtract(suite, H(V.SharedSecret), "secret"u8, [], secret);

        Assert.Equal(V.KeyScheduleContext, "00" + Hex(pskIdHash) + Hex(infoHash));
        Assert.Equal(V.Secret, Hex(secret));
    }

    [Fact]
    public void Seal_SequenceOfEncryptions_MatchesEveryPublishedCiphertextAndNonce()
    {
        using var sender = Hpke.SetupBaseSender(H(V.PkRm), H(V.Info), Hpke.DeriveKeyPair(H(V.IkmE)), out _);
        using var recipient = Hpke.SetupBaseRecipient(H(V.Enc), H(V.SkRm), H(V.Info));
        var expected = V.Encryptions.ToDictionary(x => x.Sequence);
        var checkedCount = 0;
        for (var seq = 0; seq <= 256; seq++)
        {
            var aad = System.Text.Encoding.ASCII.GetBytes("Count-" + seq);
            Assert.Equal((ulong)seq, sender.SequenceNumber);
            var ct = sender.Seal(aad, H(V.Plaintext));
            Assert.Equal(V.Plaintext, Hex(recipient.Open(aad, ct)));
            if (expected.TryGetValue(seq, out var vector))
            {
                Assert.Equal(vector.Aad, Hex(aad));
                Assert.Equal(vector.Ciphertext, Hex(ct));
                Assert.Equal(vector.Nonce, Hex(Nonce(H(V.BaseNonce), (ulong)seq)));
                checkedCount++;
            }
        }

        Assert.Equal(V.Encryptions.Length, checkedCount);
    }

    [Fact]
    public void Open_PublishedCiphertextAtSequenceZero_WithTheRecipientKey()
    {
        var vector = V.Encryptions[0];
        var plaintext = Hpke.Open(H(V.Enc), H(V.SkRm), H(V.Info), H(vector.Aad), H(vector.Ciphertext));

        Assert.Equal(V.Plaintext, Hex(plaintext));
    }

    [Fact]
    public void Export_MatchesThePublishedExportedValues()
    {
        using var recipient = Hpke.SetupBaseRecipient(H(V.Enc), H(V.SkRm), H(V.Info));
        foreach (var (context, length, value) in V.Exports)
        {
            Assert.Equal(value, Hex(recipient.Export(H(context), length)));
        }
    }

    [Fact]
    public void Seal_RandomEphemeral_OpensOnlyWithTheRightKeyInfoAndAad()
    {
        var device = Hpke.GenerateKeyPair();
        var other = Hpke.GenerateKeyPair();
        var pt = "{\"s\":\"Quarterly numbers\"}"u8.ToArray();
        var ct = Hpke.Seal(device.PublicKey, "reg_1"u8, [], pt, out var enc);

        Assert.Equal(Hpke.PublicKeyLength, enc.Length);
        Assert.Equal(pt.Length + Hpke.TagLength, ct.Length);
        Assert.Equal(pt, Hpke.Open(enc, device.PrivateKey, "reg_1"u8, [], ct));
        Assert.ThrowsAny<CryptographicException>(() => Hpke.Open(enc, other.PrivateKey, "reg_1"u8, [], ct));
        Assert.ThrowsAny<CryptographicException>(() => Hpke.Open(enc, device.PrivateKey, "reg_2"u8, [], ct));
        Assert.ThrowsAny<CryptographicException>(() => Hpke.Open(enc, device.PrivateKey, "reg_1"u8, "x"u8, ct));
        var tampered = ct.ToArray();
        tampered[0] ^= 1;
        Assert.ThrowsAny<CryptographicException>(() => Hpke.Open(enc, device.PrivateKey, "reg_1"u8, [], tampered));

        var ct2 = Hpke.Seal(device.PublicKey, "reg_1"u8, [], pt, out var enc2);
        Assert.NotEqual(Hex(enc), Hex(enc2)); // a fresh ephemeral key per message
        Assert.NotEqual(Hex(ct), Hex(ct2));
    }

    [Fact]
    public void IsValidPublicKey_AcceptsCurvePointsAndRejectsEverythingElse()
    {
        Assert.True(Hpke.IsValidPublicKey(H(V.PkRm), out var none));
        Assert.Null(none);

        var compressed = new byte[33];
        compressed[0] = 0x02;
        H(V.PkRm).AsSpan(1, 32).CopyTo(compressed.AsSpan(1));
        Assert.False(Hpke.IsValidPublicKey(compressed, out var error));
        Assert.Contains("compressed", error, StringComparison.Ordinal);

        Assert.False(Hpke.IsValidPublicKey(new byte[64], out _));
        Assert.False(Hpke.IsValidPublicKey([], out _));

        var wrongPrefix = H(V.PkRm);
        wrongPrefix[0] = 0x05;
        Assert.False(Hpke.IsValidPublicKey(wrongPrefix, out _));

        var offCurve = H(V.PkRm);
        offCurve[64] ^= 1;
        Assert.False(Hpke.IsValidPublicKey(offCurve, out error));
        Assert.Contains("not on the P-256 curve", error, StringComparison.Ordinal);

        var infinity = new byte[65];
        infinity[0] = 0x04;
        Assert.False(Hpke.IsValidPublicKey(infinity, out _));

        var tooBig = H(V.PkRm);
        tooBig.AsSpan(1, 32).Fill(0xFF);
        Assert.False(Hpke.IsValidPublicKey(tooBig, out error));
        Assert.Contains("prime", error, StringComparison.Ordinal);

        Assert.ThrowsAny<CryptographicException>(() => Hpke.Seal(offCurve, [], [], [1], out _));
    }

    private static byte[] Nonce(byte[] baseNonce, ulong seq)
    {
        var nonce = baseNonce.ToArray();
        for (var i = 0; i < 8; i++)
        {
            nonce[^(i + 1)] ^= (byte)(seq >> (8 * i));
        }

        return nonce;
    }
}
