using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Herald.Simulators.Apns;

/// <summary>
/// Token authentication as APNs does it: verifies ES256 provider tokens against registered keys, checks
/// their age on every request, and limits how often a key introduces new tokens. Signature verification
/// is cached per distinct token string, so a steady stream of requests costs a dictionary lookup.
/// </summary>
internal sealed class FakeApnsAuth(FakeApnsServerOptions options)
{
    private const int MaxCachedTokens = 10_000;

    private readonly ConcurrentDictionary<string, SigningKey> _keys = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TokenState> _tokens = new(StringComparer.Ordinal);

    public void AddKey(string teamId, string keyId, ECDsa publicKey, IEnumerable<string>? topics)
    {
        HashSet<string>? allowed = null;
        if (topics is not null)
        {
            allowed = new HashSet<string>(topics, StringComparer.Ordinal);
            if (allowed.Count == 0)
            {
                allowed = null;
            }
        }

        _keys[keyId] = new SigningKey(teamId, keyId, publicKey, allowed);
        _tokens.Clear(); // verdicts such as "unknown kid" may have changed
    }

    /// <summary>Checks the <c>authorization</c> header; on success returns 0 and the key that signed the token.</summary>
    public (int Status, string? Reason) Check(string? authorization, DateTimeOffset now, out SigningKey? key)
    {
        key = null;
        if (string.IsNullOrEmpty(authorization))
        {
            return (403, "MissingProviderToken");
        }

        if (!_tokens.TryGetValue(authorization, out var state))
        {
            state = Parse(authorization);
            if (_tokens.Count >= MaxCachedTokens)
            {
                _tokens.Clear();
            }

            state = _tokens.GetOrAdd(authorization, state);
        }

        if (state.Failure is not null)
        {
            return (403, state.Failure);
        }

        var nowSeconds = now.ToUnixTimeSeconds();
        if (nowSeconds - state.IssuedAt > (long)options.ProviderTokenLifetime.TotalSeconds)
        {
            return (403, "ExpiredProviderToken");
        }

        if (state.IssuedAt - nowSeconds > (long)options.ProviderTokenClockSkew.TotalSeconds)
        {
            return (403, "InvalidProviderToken");
        }

        var signer = state.Key!;
        if (!state.Admitted)
        {
            lock (signer.Gate)
            {
                if (!state.Admitted)
                {
                    var windowStart = now - options.ProviderTokenUpdateInterval;
                    while (signer.NewTokens.Count > 0 && signer.NewTokens.Peek() <= windowStart)
                    {
                        signer.NewTokens.Dequeue();
                    }

                    if (signer.NewTokens.Count >= 1 + Math.Max(0, options.ProviderTokenUpdateGrace))
                    {
                        // Not admitted: the same token is judged again later, when the window has moved.
                        return (429, "TooManyProviderTokenUpdates");
                    }

                    signer.NewTokens.Enqueue(now);
                    state.Admitted = true;
                }
            }
        }

        key = signer;
        return (0, null);
    }

    private TokenState Parse(string authorization)
    {
        const string Scheme = "bearer ";
        if (!authorization.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return TokenState.Invalid;
        }

        var jwt = authorization.AsSpan(Scheme.Length).Trim();
        var firstDot = jwt.IndexOf('.');
        if (firstDot <= 0)
        {
            return TokenState.Invalid;
        }

        var secondDot = jwt[(firstDot + 1)..].IndexOf('.');
        if (secondDot <= 0)
        {
            return TokenState.Invalid;
        }

        secondDot += firstDot + 1;
        var signaturePart = jwt[(secondDot + 1)..];
        if (signaturePart.IsEmpty || signaturePart.Contains('.'))
        {
            return TokenState.Invalid;
        }

        try
        {
            var header = Base64Url.DecodeFromChars(jwt[..firstDot]);
            var claims = Base64Url.DecodeFromChars(jwt[(firstDot + 1)..secondDot]);
            var signature = Base64Url.DecodeFromChars(signaturePart);

            string? alg = null;
            string? kid = null;
            var reader = new Utf8JsonReader(header);
            ReadObject(ref reader, (ref Utf8JsonReader r, string name) =>
            {
                if (name == "alg" && r.TokenType == JsonTokenType.String)
                {
                    alg = r.GetString();
                }
                else if (name == "kid" && r.TokenType == JsonTokenType.String)
                {
                    kid = r.GetString();
                }
            });

            string? iss = null;
            long? iat = null;
            reader = new Utf8JsonReader(claims);
            ReadObject(ref reader, (ref Utf8JsonReader r, string name) =>
            {
                if (name == "iss" && r.TokenType == JsonTokenType.String)
                {
                    iss = r.GetString();
                }
                else if (name == "iat" && r.TokenType == JsonTokenType.Number && r.TryGetInt64(out var value))
                {
                    iat = value;
                }
            });

            if (alg != "ES256" || kid is null || iss is null || iat is null || signature.Length != 64)
            {
                return TokenState.Invalid;
            }

            if (!_keys.TryGetValue(kid, out var key) || key.TeamId != iss)
            {
                return TokenState.Invalid;
            }

            var signingInput = Encoding.ASCII.GetBytes(jwt[..secondDot].ToString());
            bool valid;
            lock (key.Gate)
            {
                valid = key.PublicKey.VerifyData(signingInput, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
            }

            return valid ? new TokenState(null, key, iat.Value) : TokenState.Invalid;
        }
        catch (Exception ex) when (ex is FormatException or JsonException or InvalidOperationException or CryptographicException)
        {
            return TokenState.Invalid;
        }
    }

    private delegate void PropertyReader(ref Utf8JsonReader reader, string name);

    private static void ReadObject(ref Utf8JsonReader reader, PropertyReader onProperty)
    {
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException("A JWT part must be a JSON object.");
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var name = reader.GetString()!;
            reader.Read();
            onProperty(ref reader, name);
            reader.Skip();
        }
    }

    /// <summary>A registered signing key.</summary>
    internal sealed class SigningKey(string teamId, string keyId, ECDsa publicKey, HashSet<string>? topics)
    {
        public string TeamId { get; } = teamId;
        public string KeyId { get; } = keyId;
        public ECDsa PublicKey { get; } = publicKey;

        /// <summary>Topics this key may push to; null allows any.</summary>
        public HashSet<string>? Topics { get; } = topics;

        public Lock Gate { get; } = new();

        /// <summary>When each recent new token of this key was first seen (guarded by <see cref="Gate"/>).</summary>
        public Queue<DateTimeOffset> NewTokens { get; } = new();

        public bool AllowsTopic(string topic)
        {
            if (Topics is null || Topics.Contains(topic))
            {
                return true;
            }

            // Push types such as voip or complication use the bundle id plus a suffix.
            foreach (var allowed in Topics)
            {
                if (topic.Length > allowed.Length && topic[allowed.Length] == '.' && topic.StartsWith(allowed, StringComparison.Ordinal))
                {
                    return true;
                }
            }

            return false;
        }
    }

    private sealed class TokenState(string? failure, SigningKey? key, long issuedAt)
    {
        public static readonly TokenState Invalid = new("InvalidProviderToken", null, 0);

        public string? Failure { get; } = failure;
        public SigningKey? Key { get; } = key;
        public long IssuedAt { get; } = issuedAt;
        public volatile bool Admitted;
    }
}
