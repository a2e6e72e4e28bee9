namespace Herald.Simulators.Exchange;

/// <summary>Options of <see cref="FakeExchange"/>. The defaults are Exchange's behaviour.</summary>
public sealed class FakeExchangeOptions
{
    /// <summary>The first retry delay after a failed post; each later one doubles (Exchange: 30 seconds).</summary>
    public TimeSpan InitialRetryDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A response body longer than this is not a valid answer (the post failed).</summary>
    public int MaxResponseBytes { get; set; } = 64 * 1024;

    /// <summary>Post attempts kept per subscription for inspection (the oldest are dropped first).</summary>
    public int MaxRecordedAttempts { get; set; } = 256;

    /// <summary>Seed of the random ids (subscription, item and folder ids), for reproducible runs; null for a random seed.</summary>
    public int? Seed { get; set; }

    /// <summary>The mailbox server name embedded in subscription ids, as Exchange does.</summary>
    public string ServerName { get; set; } = "exch01.fake.herald.test";

    /// <summary>The <c>RequestServerVersion</c> written in the SOAP header.</summary>
    public string ServerVersion { get; set; } = "Exchange2016";
}
