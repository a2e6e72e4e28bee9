using System.Collections.Concurrent;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Net;
using Herald.Core.Pipeline;
using Herald.Server.Auth;
using Microsoft.Extensions.Options;

namespace Herald.Server.Hosting;

/// <summary>The <c>Herald:RateLimits</c> section: request rates per API key and per source address (0 turns a limit off).</summary>
public sealed class RateLimitOptions
{
    public const string Section = "Herald:RateLimits";

    /// <summary>Management API requests a second per API key (sustained).</summary>
    [Range(0, 1_000_000)]
    public int PerKeyPerSecond { get; set; } = 200;

    /// <summary>Management API requests per API key in a burst.</summary>
    [Range(1, 10_000_000)]
    public int PerKeyBurst { get; set; } = 2_000;

    /// <summary>
    /// Requests a second per source address on the public endpoints (mail-system callbacks and the API alike). Generous by
    /// default: an Exchange front end relays a whole organisation's notifications from one address.
    /// </summary>
    [Range(0, 10_000_000)]
    public int PerAddressPerSecond { get; set; } = 20_000;

    /// <summary>Requests per source address in a burst.</summary>
    [Range(1, 100_000_000)]
    public int PerAddressBurst { get; set; } = 40_000;

    /// <summary>Failed authentications (bad API key, bad Dovecot password) a minute per source address before it gets 429 for everything.</summary>
    [Range(0, 1_000_000)]
    public int AuthFailuresPerMinute { get; set; } = 60;
}

/// <summary>
/// Rate limits in front of every endpoint: a bucket per source address (all requests), a bucket per API key (<c>/v1</c>),
/// and a bucket of authentication failures per address, so a key cannot be guessed by brute force. Over a limit the answer
/// is <c>429</c> with <c>Retry-After</c> (problem+json), never a slower server. Buckets live in bounded maps.
/// </summary>
public sealed class RequestLimits(RequestDelegate next, IOptionsMonitor<RateLimitOptions> options, TimeProvider time)
{
    private const int MaxPartitions = 50_000;

    private readonly Buckets _addresses = new(time);
    private readonly Buckets _keys = new(time);
    private readonly Buckets _failures = new(time);

    public async Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var o = options.CurrentValue;
        var address = (context.Connection.RemoteIpAddress ?? IPAddress.None).ToString();

        if (o.AuthFailuresPerMinute > 0 && _failures.Peek(address, o.AuthFailuresPerMinute, o.AuthFailuresPerMinute) is { } failureWait)
        {
            await RejectAsync(context, failureWait, "Too many failed authentications from this address.");
            return;
        }

        if (o.PerAddressPerSecond > 0 && _addresses.Take(address, o.PerAddressPerSecond * 60.0, o.PerAddressBurst) is { } addressWait)
        {
            await RejectAsync(context, addressWait, "Too many requests from this address.");
            return;
        }

        // The key's hash is computed once per request and reused by the authentication that follows. A malformed
        // header has no key to limit: it is answered 401 and counts against the address's failures.
        if (o.PerKeyPerSecond > 0 && context.Request.Path.StartsWithSegments("/v1", StringComparison.Ordinal)
            && ApiKeyAuthenticator.KeyHashOf(context) is { } key)
        {
            if (_keys.Take(key.Base64, o.PerKeyPerSecond * 60.0, o.PerKeyBurst) is { } keyWait)
            {
                await RejectAsync(context, keyWait, "Too many requests with this API key.");
                return;
            }
        }

        await next(context);

        if (o.AuthFailuresPerMinute > 0 && context.Response.StatusCode == StatusCodes.Status401Unauthorized)
        {
            _failures.Take(address, o.AuthFailuresPerMinute, o.AuthFailuresPerMinute);
        }
    }

    private static Task RejectAsync(HttpContext context, TimeSpan wait, string detail)
    {
        var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
        context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
        context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        return TypedResults.Problem(detail + $" Retry after {seconds} s.", statusCode: StatusCodes.Status429TooManyRequests, title: "Too many requests")
            .ExecuteAsync(context);
    }

    /// <summary>Token buckets by partition key, bounded: when full, idle buckets are dropped (a flood of new keys cannot grow memory).</summary>
    private sealed class Buckets(TimeProvider time)
    {
        private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

        /// <summary>Takes one token; null when taken, else how long until one is available.</summary>
        public TimeSpan? Take(string partition, double ratePerMinute, double capacity)
        {
            var entry = Get(partition);
            lock (entry)
            {
                entry.LastUsed = time.GetTimestamp();
                return entry.Bucket.Take(1, ratePerMinute, capacity) == 1 ? null : Max(entry.Bucket.UntilNextToken(ratePerMinute));
            }
        }

        /// <summary>Whether the bucket is empty (without taking): null when a token is there, else how long until one is.</summary>
        public TimeSpan? Peek(string partition, double ratePerMinute, double capacity)
        {
            if (!_entries.TryGetValue(partition, out var entry))
            {
                return null;
            }

            lock (entry)
            {
                if (entry.Bucket.Take(1, ratePerMinute, capacity) == 1)
                {
                    entry.Bucket.Return(1, capacity);
                    return null;
                }

                return Max(entry.Bucket.UntilNextToken(ratePerMinute));
            }
        }

        private static TimeSpan Max(TimeSpan wait) => wait < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : wait;

        private Entry Get(string partition)
        {
            if (_entries.TryGetValue(partition, out var entry))
            {
                return entry;
            }

            if (_entries.Count >= MaxPartitions)
            {
                var idleSince = time.GetTimestamp() - (time.TimestampFrequency * 60);
                foreach (var pair in _entries)
                {
                    if (pair.Value.LastUsed < idleSince)
                    {
                        _entries.TryRemove(pair);
                    }
                }

                if (_entries.Count >= MaxPartitions)
                {
                    _entries.Clear(); // everything is busy: start over rather than grow without bound
                }
            }

            return _entries.GetOrAdd(partition, _ => new Entry(new TokenBucket(time)));
        }

        private sealed class Entry(TokenBucket bucket)
        {
            public TokenBucket Bucket { get; } = bucket;

            public long LastUsed { get; set; }
        }
    }
}
