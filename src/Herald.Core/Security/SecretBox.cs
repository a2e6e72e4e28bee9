using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Herald.Core.Security;

/// <summary>
/// Encryption of secrets at rest (push credentials, connector passwords, mailbox addresses) with keys kept outside
/// the database, and keyed hashes for looking such values up without storing them in clear.
/// </summary>
/// <remarks>
/// AES-256-GCM with a random 96-bit nonce per value. A sealed value reads <c>hs1.&lt;keyId&gt;.&lt;base64url(nonce|ciphertext|tag)&gt;</c>,
/// so a rotated key ring still opens values sealed under older keys. The purpose of a value
/// (for example <c>credential:apns</c>) is bound as associated data: a value copied into another column does not open.
/// Keyed hashes are HMAC-SHA256 under a key derived (HKDF) from the ring's <em>hash key</em>, which stays the same
/// across rotations so lookups keep working.
/// </remarks>
public sealed class SecretBox
{
    private const string Prefix = "hs1.";
    private const int NonceSize = 12;
    private const int TagSize = 16;

    private readonly Dictionary<string, byte[]> _keys;
    private readonly string _currentId;
    private readonly byte[] _hashKey;

    /// <summary>A box over a key ring: <paramref name="keys"/> in order, the first is current for sealing; the last one's derivative keys the hashes.</summary>
    public SecretBox(IReadOnlyList<SecretKey> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if (keys.Count == 0)
        {
            throw new ArgumentException("A key ring needs at least one key.", nameof(keys));
        }

        _keys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            if (!_keys.TryAdd(key.Id, key.Material.ToArray()))
            {
                throw new ArgumentException($"Key id '{key.Id}' appears twice in the key ring.", nameof(keys));
            }
        }

        _currentId = keys[0].Id;
        _hashKey = HKDF.DeriveKey(HashAlgorithmName.SHA256, keys[^1].Material.ToArray(), 32, info: "herald keyed hash v1"u8.ToArray());
    }

    /// <summary>The id of the key new values are sealed with.</summary>
    public string CurrentKeyId => _currentId;

    /// <summary>A box with one fresh random key (tests and throw-away demos).</summary>
    public static SecretBox CreateEphemeral() => new([SecretKey.Generate("k1")]);

    /// <summary>Seals <paramref name="plaintext"/> for storage; <paramref name="purpose"/> must be given again to open it.</summary>
    public string Seal(string plaintext, string purpose)
    {
        ArgumentNullException.ThrowIfNull(plaintext);
        return Seal(Encoding.UTF8.GetBytes(plaintext), purpose);
    }

    /// <summary>Seals bytes for storage.</summary>
    public string Seal(ReadOnlySpan<byte> plaintext, string purpose)
    {
        ArgumentException.ThrowIfNullOrEmpty(purpose);
        var key = _keys[_currentId];
        var sealedBytes = new byte[NonceSize + plaintext.Length + TagSize];
        var nonce = sealedBytes.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(key, TagSize);
        aes.Encrypt(nonce, plaintext, sealedBytes.AsSpan(NonceSize, plaintext.Length), sealedBytes.AsSpan(NonceSize + plaintext.Length), Encoding.UTF8.GetBytes(purpose));
        return Prefix + _currentId + "." + Base64Url.EncodeToString(sealedBytes);
    }

    /// <summary>Opens a value sealed by <see cref="Seal(string, string)"/> under any key of the ring.</summary>
    /// <exception cref="CryptographicException">The value is damaged, sealed for another purpose, or under a key the ring does not hold.</exception>
    public string Open(string sealedValue, string purpose) => Encoding.UTF8.GetString(OpenBytes(sealedValue, purpose));

    /// <summary>Opens a sealed value into bytes.</summary>
    public byte[] OpenBytes(string sealedValue, string purpose)
    {
        ArgumentNullException.ThrowIfNull(sealedValue);
        ArgumentException.ThrowIfNullOrEmpty(purpose);
        if (!sealedValue.StartsWith(Prefix, StringComparison.Ordinal))
        {
            throw new CryptographicException("Not a sealed value.");
        }

        var dot = sealedValue.IndexOf('.', Prefix.Length);
        if (dot < 0)
        {
            throw new CryptographicException("Not a sealed value.");
        }

        var keyId = sealedValue[Prefix.Length..dot];
        if (!_keys.TryGetValue(keyId, out var key))
        {
            throw new CryptographicException($"The value was sealed under key '{keyId}', which the key ring does not hold.");
        }

        byte[] data;
        try
        {
            data = Base64Url.DecodeFromChars(sealedValue.AsSpan(dot + 1));
        }
        catch (FormatException e)
        {
            throw new CryptographicException("Not a sealed value.", e);
        }

        if (data.Length < NonceSize + TagSize)
        {
            throw new CryptographicException("Not a sealed value.");
        }

        var plaintext = new byte[data.Length - NonceSize - TagSize];
        using var aes = new AesGcm(key, TagSize);
        aes.Decrypt(data.AsSpan(0, NonceSize), data.AsSpan(NonceSize, plaintext.Length), data.AsSpan(NonceSize + plaintext.Length), plaintext, Encoding.UTF8.GetBytes(purpose));
        return plaintext;
    }

    /// <summary>Whether <paramref name="sealedValue"/> was sealed under a key other than the current one (a rotation should reseal it).</summary>
    public bool NeedsReseal(string sealedValue)
        => sealedValue is not null && !sealedValue.StartsWith(Prefix + _currentId + ".", StringComparison.Ordinal);

    /// <summary>
    /// HMAC-SHA256 of <paramref name="value"/> for lookups (for example a mailbox address, normalised by the caller),
    /// separated by <paramref name="purpose"/> so equal values of different kinds hash differently.
    /// </summary>
    public byte[] KeyedHash(string value, string purpose)
    {
        ArgumentNullException.ThrowIfNull(value);
        ArgumentException.ThrowIfNullOrEmpty(purpose);
        var bytes = Encoding.UTF8.GetBytes(purpose + "\n" + value);
        return HMACSHA256.HashData(_hashKey, bytes);
    }

    /// <summary>The keyed hash of a mailbox address or user id: trimmed and lower-cased invariantly first.</summary>
    public byte[] MailboxHash(string mailbox)
    {
        ArgumentNullException.ThrowIfNull(mailbox);
        return KeyedHash(mailbox.Trim().ToLowerInvariant(), "mailbox");
    }
}

/// <summary>One key of a <see cref="SecretBox"/> ring: an id and 32 bytes of key material.</summary>
public sealed class SecretKey
{
    /// <summary>A key; <paramref name="id"/> is 1–32 characters of letters, digits, '-' or '_'.</summary>
    public SecretKey(string id, ReadOnlyMemory<byte> material)
    {
        if (string.IsNullOrEmpty(id) || id.Length > 32 || !id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new ArgumentException("A key id is 1-32 characters of letters, digits, '-' or '_'.", nameof(id));
        }

        if (material.Length != 32)
        {
            throw new ArgumentException("A key is 32 bytes (256 bits).", nameof(material));
        }

        Id = id;
        Material = material;
    }

    /// <summary>The id written into every value sealed with this key.</summary>
    public string Id { get; }

    /// <summary>The 32 key bytes.</summary>
    public ReadOnlyMemory<byte> Material { get; }

    /// <summary>A fresh random key.</summary>
    public static SecretKey Generate(string id) => new(id, RandomNumberGenerator.GetBytes(32));
}

/// <summary>
/// The key ring file: one key per line, <c>&lt;id&gt; &lt;base64 of 32 bytes&gt;</c>; the first line is the current key,
/// the last line keys the lookup hashes; '#' starts a comment. Or one base64 key in an environment variable (id "env").
/// </summary>
public static class SecretKeyRing
{
    /// <summary>Parses the text of a key ring file.</summary>
    /// <exception cref="FormatException">A line is not "id base64key", or no key is present.</exception>
    public static IReadOnlyList<SecretKey> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var keys = new List<SecretKey>();
        var lineNumber = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNumber++;
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2)
            {
                throw new FormatException($"Key ring line {lineNumber}: expected '<id> <base64 key>'.");
            }

            keys.Add(ParseKey(parts[0], parts[1], $"line {lineNumber}"));
        }

        return keys.Count > 0 ? keys : throw new FormatException("The key ring holds no key.");
    }

    /// <summary>A single key from base64 text (for an environment variable).</summary>
    public static SecretKey ParseKey(string id, string base64, string where)
    {
        byte[] material;
        try
        {
            material = Convert.FromBase64String(base64.Trim());
        }
        catch (FormatException e)
        {
            throw new FormatException($"Key ring {where}: the key is not base64.", e);
        }

        if (material.Length != 32)
        {
            throw new FormatException($"Key ring {where}: the key is {material.Length} bytes; it must be 32 (256 bits).");
        }

        return new SecretKey(id, material);
    }

    /// <summary>Formats a ring as file text.</summary>
    public static string Format(IEnumerable<SecretKey> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var text = new StringBuilder("# Herald secret key ring: first line seals new values, every line opens; keep this file outside the database.\n");
        foreach (var key in keys)
        {
            text.Append(key.Id).Append(' ').Append(Convert.ToBase64String(key.Material.Span)).Append('\n');
        }

        return text.ToString();
    }
}
