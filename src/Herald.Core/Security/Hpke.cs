using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Herald.Core.Security;

/// <summary>
/// Hybrid Public Key Encryption (RFC 9180) for one cipher suite: mode base, DHKEM(P-256, HKDF-SHA256) (KEM 0x0010),
/// HKDF-SHA256 (KDF 0x0001), AES-128-GCM (AEAD 0x0001). Built on .NET primitives only (<see cref="ECDiffieHellman"/>,
/// <see cref="HKDF"/>, <see cref="AesGcm"/>). Herald is always the sender: it seals previews for a device's public key,
/// which the device opens with CryptoKit, Tink or BouncyCastle. The recipient side exists for tests and tools.
/// </summary>
public static class Hpke
{
    /// <summary>DHKEM(P-256, HKDF-SHA256).</summary>
    public const ushort KemId = 0x0010;

    /// <summary>HKDF-SHA256.</summary>
    public const ushort KdfId = 0x0001;

    /// <summary>AES-128-GCM.</summary>
    public const ushort AeadId = 0x0001;

    /// <summary>Npk = Nenc: an uncompressed SEC1 point, <c>0x04 || X || Y</c>.</summary>
    public const int PublicKeyLength = 65;

    /// <summary>Nsk: the private scalar, big-endian.</summary>
    public const int PrivateKeyLength = 32;

    /// <summary>Nk of AES-128-GCM.</summary>
    public const int KeyLength = 16;

    /// <summary>Nn of AES-128-GCM.</summary>
    public const int NonceLength = 12;

    /// <summary>Nt of AES-128-GCM.</summary>
    public const int TagLength = 16;

    /// <summary>Nh of HKDF-SHA256 (also Nsecret of the KEM).</summary>
    public const int HashLength = 32;

    private const byte ModeBase = 0x00;

    private static ReadOnlySpan<byte> Version => "HPKE-v1"u8;

    // suite_id inside the KEM: "KEM" || I2OSP(kem_id, 2).
    private static ReadOnlySpan<byte> KemSuiteId => [(byte)'K', (byte)'E', (byte)'M', 0x00, 0x10];

    // suite_id of the rest: "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2).
    private static ReadOnlySpan<byte> HpkeSuiteId => [(byte)'H', (byte)'P', (byte)'K', (byte)'E', 0x00, 0x10, 0x00, 0x01, 0x00, 0x01];

    // The order n of P-256 (DeriveKeyPair rejects candidates >= n) and the field prime p (coordinates must be < p).
    private static ReadOnlySpan<byte> Order => [
        0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51];

    private static ReadOnlySpan<byte> Prime => [
        0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

    /// <summary>
    /// Whether <paramref name="publicKey"/> is a usable recipient key: 65 bytes, uncompressed (<c>0x04</c>), both
    /// coordinates below p, and the point on P-256. <paramref name="error"/> says what is wrong otherwise.
    /// </summary>
    public static bool IsValidPublicKey(ReadOnlySpan<byte> publicKey, out string? error)
    {
        if (publicKey.Length != PublicKeyLength)
        {
            error = publicKey.Length == 33 && publicKey[0] is 0x02 or 0x03
                ? "it is a compressed point; send the uncompressed form (65 bytes starting with 0x04)"
                : $"it is {publicKey.Length} bytes; an uncompressed P-256 point is 65 bytes starting with 0x04";
            return false;
        }

        if (publicKey[0] != 0x04)
        {
            error = "it does not start with 0x04 (an uncompressed P-256 point)";
            return false;
        }

        if (publicKey.Slice(1, 32).SequenceCompareTo(Prime) >= 0 || publicKey.Slice(33, 32).SequenceCompareTo(Prime) >= 0)
        {
            error = "a coordinate is not below the P-256 field prime";
            return false;
        }

        try
        {
            using var key = ImportPublicKey(publicKey);
        }
        catch (CryptographicException)
        {
            error = "the point is not on the P-256 curve";
            return false;
        }

        error = null;
        return true;
    }

    /// <summary>RFC 9180 §7.1.3 DeriveKeyPair for P-256: rejection sampling of HKDF output with bitmask 0xFF.</summary>
    /// <exception cref="CryptographicException">No candidate in 256 was a valid scalar (probability ~2^-8192).</exception>
    public static HpkeKeyPair DeriveKeyPair(ReadOnlySpan<byte> ikm)
    {
        Span<byte> prk = stackalloc byte[HashLength];
        LabeledExtract(KemSuiteId, [], "dkp_prk"u8, ikm, prk);
        Span<byte> candidate = stackalloc byte[PrivateKeyLength];
        Span<byte> counter = stackalloc byte[1];
        for (var i = 0; i <= 255; i++)
        {
            counter[0] = (byte)i;
            LabeledExpand(KemSuiteId, prk, "candidate"u8, counter, candidate);
            candidate[0] &= 0xFF; // the P-256 bitmask: every bit of the first byte is kept
            if (!IsZero(candidate) && candidate.SequenceCompareTo(Order) < 0)
            {
                var sk = candidate.ToArray();
                return new HpkeKeyPair(sk, PublicKeyOf(sk));
            }
        }

        throw new CryptographicException("DeriveKeyPair found no valid P-256 scalar.");
    }

    /// <summary>A fresh random key pair (what a device does once; Herald only needs one in tests).</summary>
    public static HpkeKeyPair GenerateKeyPair()
    {
        Span<byte> ikm = stackalloc byte[PrivateKeyLength];
        RandomNumberGenerator.Fill(ikm);
        return DeriveKeyPair(ikm);
    }

    /// <summary>SetupBaseS with a fresh ephemeral key: the sender's context and <paramref name="enc"/>, the encapsulated key to send along.</summary>
    /// <exception cref="CryptographicException">The recipient key is not a valid P-256 point.</exception>
    public static HpkeContext SetupBaseSender(ReadOnlySpan<byte> recipientPublicKey, ReadOnlySpan<byte> info, out byte[] enc)
        => SetupBaseSender(recipientPublicKey, info, GenerateKeyPair(), out enc);

    /// <summary>SetupBaseS with a given ephemeral key pair (deterministic, for the RFC 9180 test vectors).</summary>
    /// <exception cref="CryptographicException">The recipient key is not a valid P-256 point.</exception>
    public static HpkeContext SetupBaseSender(ReadOnlySpan<byte> recipientPublicKey, ReadOnlySpan<byte> info, HpkeKeyPair ephemeral, out byte[] enc)
    {
        ArgumentNullException.ThrowIfNull(ephemeral);
        RequireLength(recipientPublicKey, PublicKeyLength, nameof(recipientPublicKey));
        Span<byte> dh = stackalloc byte[HashLength];
        Dh(ephemeral.PrivateKey, recipientPublicKey, dh);
        enc = ephemeral.PublicKey.ToArray();
        Span<byte> sharedSecret = stackalloc byte[HashLength];
        ExtractAndExpand(dh, enc, recipientPublicKey, sharedSecret);
        CryptographicOperations.ZeroMemory(dh);
        return KeySchedule(sharedSecret, info);
    }

    /// <summary>SetupBaseR: the recipient's context for <paramref name="enc"/>, with its private key <paramref name="recipientPrivateKey"/>.</summary>
    /// <exception cref="CryptographicException"><paramref name="enc"/> is not a valid P-256 point, or the private key is invalid.</exception>
    public static HpkeContext SetupBaseRecipient(ReadOnlySpan<byte> enc, ReadOnlySpan<byte> recipientPrivateKey, ReadOnlySpan<byte> info)
    {
        RequireLength(enc, PublicKeyLength, nameof(enc));
        RequireLength(recipientPrivateKey, PrivateKeyLength, nameof(recipientPrivateKey));
        Span<byte> dh = stackalloc byte[HashLength];
        Dh(recipientPrivateKey, enc, dh);
        var recipientPublicKey = PublicKeyOf(recipientPrivateKey);
        Span<byte> sharedSecret = stackalloc byte[HashLength];
        ExtractAndExpand(dh, enc, recipientPublicKey, sharedSecret);
        CryptographicOperations.ZeroMemory(dh);
        return KeySchedule(sharedSecret, info);
    }

    /// <summary>Single-shot SealBase: the ciphertext (plaintext length + 16) and the encapsulated key.</summary>
    /// <exception cref="CryptographicException">The recipient key is not a valid P-256 point.</exception>
    public static byte[] Seal(ReadOnlySpan<byte> recipientPublicKey, ReadOnlySpan<byte> info, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> plaintext, out byte[] enc)
    {
        using var context = SetupBaseSender(recipientPublicKey, info, out enc);
        return context.Seal(aad, plaintext);
    }

    /// <summary>Single-shot OpenBase.</summary>
    /// <exception cref="CryptographicException">The key, <paramref name="info"/>, <paramref name="aad"/> or ciphertext do not match (includes <see cref="AuthenticationTagMismatchException"/>).</exception>
    public static byte[] Open(ReadOnlySpan<byte> enc, ReadOnlySpan<byte> recipientPrivateKey, ReadOnlySpan<byte> info, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> ciphertext)
    {
        using var context = SetupBaseRecipient(enc, recipientPrivateKey, info);
        return context.Open(aad, ciphertext);
    }

    /// <summary>The uncompressed public key <c>0x04 || X || Y</c> of a private scalar.</summary>
    public static byte[] PublicKeyOf(ReadOnlySpan<byte> privateKey)
    {
        RequireLength(privateKey, PrivateKeyLength, nameof(privateKey));
        var d = privateKey.ToArray();
        try
        {
            using var key = ECDiffieHellman.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, D = d });
            var q = key.ExportParameters(false).Q;
            var pk = new byte[PublicKeyLength];
            pk[0] = 0x04;
            q.X.AsSpan().CopyTo(pk.AsSpan(1, 32));
            q.Y.AsSpan().CopyTo(pk.AsSpan(33, 32));
            return pk;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(d);
        }
    }

    private static ECDiffieHellman ImportPublicKey(ReadOnlySpan<byte> publicKey) => ECDiffieHellman.Create(new ECParameters
    {
        Curve = ECCurve.NamedCurves.nistP256,
        Q = new ECPoint { X = publicKey.Slice(1, 32).ToArray(), Y = publicKey.Slice(33, 32).ToArray() },
    });

    /// <summary>DH(sk, pk): the X coordinate of sk·pk (Ndh = 32), after validating pk (RFC 9180 §7.1.4).</summary>
    private static void Dh(ReadOnlySpan<byte> privateKey, ReadOnlySpan<byte> publicKey, Span<byte> destination)
    {
        if (!IsValidPublicKey(publicKey, out var error))
        {
            throw new CryptographicException("The public key is not valid: " + error + ".");
        }

        var d = privateKey.ToArray();
        try
        {
            using var own = ECDiffieHellman.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, D = d });
            using var other = ImportPublicKey(publicKey);
            var secret = own.DeriveRawSecretAgreement(other.PublicKey);
            secret.CopyTo(destination);
            CryptographicOperations.ZeroMemory(secret);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(d);
        }
    }

    private static void ExtractAndExpand(ReadOnlySpan<byte> dh, ReadOnlySpan<byte> enc, ReadOnlySpan<byte> recipientPublicKey, Span<byte> sharedSecret)
    {
        Span<byte> prk = stackalloc byte[HashLength];
        LabeledExtract(KemSuiteId, [], "eae_prk"u8, dh, prk);
        Span<byte> kemContext = stackalloc byte[PublicKeyLength * 2];
        enc.CopyTo(kemContext);
        recipientPublicKey.CopyTo(kemContext[PublicKeyLength..]);
        LabeledExpand(KemSuiteId, prk, "shared_secret"u8, kemContext, sharedSecret);
        CryptographicOperations.ZeroMemory(prk);
    }

    private static HpkeContext KeySchedule(Span<byte> sharedSecret, ReadOnlySpan<byte> info)
    {
        // key_schedule_context = mode || LabeledExtract("", "psk_id_hash", "") || LabeledExtract("", "info_hash", info)
        Span<byte> context = stackalloc byte[1 + HashLength + HashLength];
        context[0] = ModeBase;
        LabeledExtract(HpkeSuiteId, [], "psk_id_hash"u8, [], context.Slice(1, HashLength));
        LabeledExtract(HpkeSuiteId, [], "info_hash"u8, info, context.Slice(1 + HashLength, HashLength));

        Span<byte> secret = stackalloc byte[HashLength];
        LabeledExtract(HpkeSuiteId, sharedSecret, "secret"u8, [], secret); // psk = "" in mode base
        var key = new byte[KeyLength];
        var baseNonce = new byte[NonceLength];
        var exporterSecret = new byte[HashLength];
        LabeledExpand(HpkeSuiteId, secret, "key"u8, context, key);
        LabeledExpand(HpkeSuiteId, secret, "base_nonce"u8, context, baseNonce);
        LabeledExpand(HpkeSuiteId, secret, "exp"u8, context, exporterSecret);
        var result = new HpkeContext(sharedSecret.ToArray(), key, baseNonce, exporterSecret);
        CryptographicOperations.ZeroMemory(secret);
        CryptographicOperations.ZeroMemory(sharedSecret);
        return result;
    }

    /// <summary>LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm).</summary>
    internal static void LabeledExtract(ReadOnlySpan<byte> suiteId, ReadOnlySpan<byte> salt, ReadOnlySpan<byte> label, ReadOnlySpan<byte> ikm, Span<byte> prk)
    {
        var labeled = new byte[Version.Length + suiteId.Length + label.Length + ikm.Length];
        var at = Append(labeled, 0, Version);
        at = Append(labeled, at, suiteId);
        at = Append(labeled, at, label);
        Append(labeled, at, ikm);
        HKDF.Extract(HashAlgorithmName.SHA256, labeled, salt, prk);
        CryptographicOperations.ZeroMemory(labeled);
    }

    /// <summary>LabeledExpand(prk, label, info, L) = Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L).</summary>
    internal static void LabeledExpand(ReadOnlySpan<byte> suiteId, ReadOnlySpan<byte> prk, ReadOnlySpan<byte> label, ReadOnlySpan<byte> info, Span<byte> output)
    {
        var labeled = new byte[2 + Version.Length + suiteId.Length + label.Length + info.Length];
        BinaryPrimitives.WriteUInt16BigEndian(labeled, checked((ushort)output.Length));
        var at = Append(labeled, 2, Version);
        at = Append(labeled, at, suiteId);
        at = Append(labeled, at, label);
        Append(labeled, at, info);
        HKDF.Expand(HashAlgorithmName.SHA256, prk, output, labeled);
    }

    /// <summary>The exporter: LabeledExpand(exporter_secret, "sec", exporter_context, L).</summary>
    internal static byte[] Export(ReadOnlySpan<byte> exporterSecret, ReadOnlySpan<byte> exporterContext, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, 255 * HashLength);
        var output = new byte[length];
        LabeledExpand(HpkeSuiteId, exporterSecret, "sec"u8, exporterContext, output);
        return output;
    }

    private static int Append(byte[] destination, int at, ReadOnlySpan<byte> part)
    {
        part.CopyTo(destination.AsSpan(at));
        return at + part.Length;
    }

    private static bool IsZero(ReadOnlySpan<byte> value) => value.IndexOfAnyExcept((byte)0) < 0;

    private static void RequireLength(ReadOnlySpan<byte> value, int length, string name)
    {
        if (value.Length != length)
        {
            throw new ArgumentException($"Expected {length} bytes, got {value.Length}.", name);
        }
    }
}

/// <summary>A P-256 key pair: the 32-byte private scalar and the 65-byte uncompressed public key.</summary>
public sealed record HpkeKeyPair(byte[] PrivateKey, byte[] PublicKey);

/// <summary>
/// An HPKE encryption context (RFC 9180 §5.2): AES-128-GCM with the nonce <c>base_nonce XOR I2OSP(seq, 12)</c>, the
/// sequence number incremented after every seal or successful open. Not thread-safe; dispose it to clear the key.
/// </summary>
public sealed class HpkeContext : IDisposable
{
    private readonly AesGcm _aead;
    private readonly byte[] _baseNonce;
    private readonly byte[] _exporterSecret;
    private ulong _sequence;

    internal HpkeContext(byte[] sharedSecret, byte[] key, byte[] baseNonce, byte[] exporterSecret)
    {
        SharedSecret = sharedSecret;
        Key = key;
        _baseNonce = baseNonce;
        _exporterSecret = exporterSecret;
        _aead = new AesGcm(key, Hpke.TagLength);
    }

    /// <summary>The KEM shared secret (exposed to tests for the RFC vectors).</summary>
    internal byte[] SharedSecret { get; }

    /// <summary>The AEAD key (exposed to tests for the RFC vectors).</summary>
    internal byte[] Key { get; }

    /// <summary>The base nonce (exposed to tests for the RFC vectors).</summary>
    internal ReadOnlySpan<byte> BaseNonce => _baseNonce;

    /// <summary>The exporter secret (exposed to tests for the RFC vectors).</summary>
    internal ReadOnlySpan<byte> ExporterSecret => _exporterSecret;

    /// <summary>The sequence number the next seal or open uses.</summary>
    public ulong SequenceNumber => _sequence;

    /// <summary>ContextS.Seal: the ciphertext with its 16-byte tag appended.</summary>
    public byte[] Seal(ReadOnlySpan<byte> aad, ReadOnlySpan<byte> plaintext)
    {
        Span<byte> nonce = stackalloc byte[Hpke.NonceLength];
        ComputeNonce(nonce);
        var output = new byte[plaintext.Length + Hpke.TagLength];
        _aead.Encrypt(nonce, plaintext, output.AsSpan(0, plaintext.Length), output.AsSpan(plaintext.Length), aad);
        _sequence++;
        return output;
    }

    /// <summary>ContextR.Open: the plaintext.</summary>
    /// <exception cref="CryptographicException">The ciphertext is too short or does not authenticate (<see cref="AuthenticationTagMismatchException"/>).</exception>
    public byte[] Open(ReadOnlySpan<byte> aad, ReadOnlySpan<byte> ciphertext)
    {
        if (ciphertext.Length < Hpke.TagLength)
        {
            throw new CryptographicException("The ciphertext is shorter than its tag.");
        }

        Span<byte> nonce = stackalloc byte[Hpke.NonceLength];
        ComputeNonce(nonce);
        var length = ciphertext.Length - Hpke.TagLength;
        var plaintext = new byte[length];
        _aead.Decrypt(nonce, ciphertext[..length], ciphertext[length..], plaintext, aad);
        _sequence++;
        return plaintext;
    }

    /// <summary>Context.Export: <paramref name="length"/> bytes bound to this context and <paramref name="exporterContext"/>.</summary>
    public byte[] Export(ReadOnlySpan<byte> exporterContext, int length) => Hpke.Export(_exporterSecret, exporterContext, length);

    private void ComputeNonce(Span<byte> nonce)
    {
        if (_sequence == ulong.MaxValue)
        {
            throw new CryptographicException("The HPKE message limit was reached.");
        }

        // I2OSP(seq, Nn) is the 64-bit sequence number right-aligned in 12 bytes.
        _baseNonce.CopyTo(nonce);
        Span<byte> seq = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(seq, _sequence);
        for (var i = 0; i < 8; i++)
        {
            nonce[Hpke.NonceLength - 8 + i] ^= seq[i];
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _aead.Dispose();
        CryptographicOperations.ZeroMemory(Key);
        CryptographicOperations.ZeroMemory(SharedSecret);
        CryptographicOperations.ZeroMemory(_exporterSecret);
    }
}
