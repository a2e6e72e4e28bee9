using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Herald.Core.Notifications;
using Herald.Providers.Apns;
using Herald.Sources.Ews;
using Microsoft.Extensions.Options;

namespace Herald.Bench;

/// <summary>Micro-benchmarks run in this process with BenchmarkDotNet's default statistics (issue 10, item 5).</summary>
public sealed class MicroConfig : ManualConfig
{
    public MicroConfig()
    {
        AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(3).WithIterationCount(10).WithId("Micro"));
        AddDiagnoser(BenchmarkDotNet.Diagnosers.MemoryDiagnoser.Default);
        ArtifactsPath = Path.Combine(AppContext.BaseDirectory, "BenchmarkDotNet.Artifacts");
    }
}

/// <summary>
/// The per-event and per-push hot paths outside the database: parsing Exchange's <c>SendNotification</c>, building
/// the APNs payload, and taking the cached provider token (JWT reuse) for every push.
/// </summary>
[Config(typeof(MicroConfig))]
public class MicroBenchmarks : IDisposable
{
    private const string Types = "http://schemas.microsoft.com/exchange/services/2006/types";
    private const string Messages = "http://schemas.microsoft.com/exchange/services/2006/messages";

    /// <summary>A typical new-mail callback as Exchange 2016 posts it: NewMail, Created and the Inbox's Modified with its unread count.</summary>
    private static readonly byte[] SendNotificationBody = Encoding.UTF8.GetBytes($"""
        <?xml version="1.0" encoding="utf-8"?>
        <soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/">
          <soap11:Header><t:RequestServerVersion xmlns:t="{Types}" Version="Exchange2016"/></soap11:Header>
          <soap11:Body>
            <m:SendNotification xmlns:t="{Types}" xmlns:m="{Messages}">
              <m:ResponseMessages>
                <m:SendNotificationResponseMessage ResponseClass="Success">
                  <m:ResponseCode>NoError</m:ResponseCode>
                  <m:Notification>
                    <t:SubscriptionId>FwBleGNoMDEuY29udG9zby5jb20QAAAAQNUN4ZjZ1EmYHnmDkx9W5Ig1Pnp9B9oIEAAAAI3NlYnI/Ns=</t:SubscriptionId>
                    <t:PreviousWatermark>AQAAAI8rQ7bT9J1Mkq3Yq4RqzmVwEgAAAAAAAAE=</t:PreviousWatermark>
                    <t:MoreEvents>false</t:MoreEvents>
                    <t:NewMailEvent>
                      <t:Watermark>AQAAAI8rQ7bT9J1Mkq3Yq4RqzmV3EgAAAAAAAAE=</t:Watermark>
                      <t:TimeStamp>2026-11-23T10:15:02Z</t:TimeStamp>
                      <t:ItemId Id="AAMkADkzNjJjYmE2LWM0ZjItNDQ3Yi1iZDQxLTcwYjc0MzVhOWRjNABGAAAAAAC3VHYz4oq5SrOhh8KPO9dBBwBPDELbGJz0TqjYx6yOi0R1AAAAAAEMAABPDELbGJz0TqjYx6yOi0R1AAAtDfTeAAA=" ChangeKey="CQAAABYAAABPDELbGJz0TqjYx6yOi0R1AAAtDi6x"/>
                      <t:ParentFolderId Id="AQMkADkzNjJjYmE2LWM0ZjItNDQ3Yi1iZDQxLTcwYjc0MzVhOWRjNAAuAAADt1R2M+KKuUqzoYfCjzvXQQEATwxC2xic9E6o2MesjotEdQAAAgEMAAAA" ChangeKey="AQAAAA=="/>
                    </t:NewMailEvent>
                    <t:CreatedEvent>
                      <t:Watermark>AQAAAI8rQ7bT9J1Mkq3Yq4RqzmV4EgAAAAAAAAE=</t:Watermark>
                      <t:TimeStamp>2026-11-23T10:15:02Z</t:TimeStamp>
                      <t:ItemId Id="AAMkADkzNjJjYmE2LWM0ZjItNDQ3Yi1iZDQxLTcwYjc0MzVhOWRjNABGAAAAAAC3VHYz4oq5SrOhh8KPO9dBBwBPDELbGJz0TqjYx6yOi0R1AAAAAAEMAABPDELbGJz0TqjYx6yOi0R1AAAtDfTeAAA=" ChangeKey="CQAAABYAAABPDELbGJz0TqjYx6yOi0R1AAAtDi6x"/>
                      <t:ParentFolderId Id="AQMkADkzNjJjYmE2LWM0ZjItNDQ3Yi1iZDQxLTcwYjc0MzVhOWRjNAAuAAADt1R2M+KKuUqzoYfCjzvXQQEATwxC2xic9E6o2MesjotEdQAAAgEMAAAA" ChangeKey="AQAAAA=="/>
                    </t:CreatedEvent>
                    <t:ModifiedEvent>
                      <t:Watermark>AQAAAI8rQ7bT9J1Mkq3Yq4RqzmV5EgAAAAAAAAE=</t:Watermark>
                      <t:TimeStamp>2026-11-23T10:15:02Z</t:TimeStamp>
                      <t:FolderId Id="AQMkADkzNjJjYmE2LWM0ZjItNDQ3Yi1iZDQxLTcwYjc0MzVhOWRjNAAuAAADt1R2M+KKuUqzoYfCjzvXQQEATwxC2xic9E6o2MesjotEdQAAAgEMAAAA" ChangeKey="AQAAAA=="/>
                      <t:ParentFolderId Id="AQMkADkzNjJjYmE2LWM0ZjItNDQ3Yi1iZDQxLTcwYjc0MzVhOWRjNAAuAAADt1R2M+KKuUqzoYfCjzvXQQEATwxC2xic9E6o2MesjotEdQAAAgEIAAAA" ChangeKey="AQAAAA=="/>
                      <t:UnreadCount>7</t:UnreadCount>
                    </t:ModifiedEvent>
                  </m:Notification>
                </m:SendNotificationResponseMessage>
              </m:ResponseMessages>
            </m:SendNotification>
          </soap11:Body>
        </soap11:Envelope>
        """);

    private static readonly NotificationContent Badge = new() { Kind = PushKind.Badge, Badge = 7 };
    private static readonly NotificationContent Alert = new() { Kind = PushKind.Alert, Title = "Anna Lindqvist", Body = "Quarterly numbers: the draft is in the shared folder, comments by Friday please", Badge = 7 };

    // ApnsPayload is internal to Herald.Providers: bound once by reflection, called through a typed delegate.
    private delegate byte[]? BuildPayload(NotificationContent content, out int size, int maxBytes);

    private static readonly BuildPayload Build = typeof(ApnsTokenCache).Assembly.GetType("Herald.Providers.Apns.ApnsPayload", throwOnError: true)!
        .GetMethod("Build", BindingFlags.Public | BindingFlags.Static)!
        .CreateDelegate<BuildPayload>();

    private readonly ApnsSigningKey _key;
    private readonly ApnsTokenCache _tokens = new(TimeProvider.System, Options.Create(new ApnsOptions()));

    public MicroBenchmarks()
    {
        _key = ApnsSigningKey.FromKey("BENCHTEAM1", "BENCHKEY01", ECDsa.Create(ECCurve.NamedCurves.nistP256)); // takes ownership
    }

    [Benchmark(Description = "EWS SendNotification parse (3 events)")]
    public object? ParseSendNotification()
        => EwsNotificationParser.TryParseSendNotification(SendNotificationBody, "text/xml; charset=utf-8", out var parsed, out _) ? parsed : throw new InvalidOperationException("sample did not parse");

    [Benchmark(Description = "APNs payload, badge")]
    public byte[]? BadgePayload() => Build(Badge, out _, 4096);

    [Benchmark(Description = "APNs payload, alert with badge")]
    public byte[]? AlertPayload() => Build(Alert, out _, 4096);

    [Benchmark(Description = "APNs provider token, cached (JWT reuse)")]
    public ValueTask<ApnsProviderToken> CachedToken() => _tokens.GetAsync(_key, CancellationToken.None);

    [Benchmark(Description = "APNs provider token, minted (ES256 sign, for comparison)")]
    public ApnsProviderToken MintedToken() => _key.Mint(DateTimeOffset.UtcNow);

    public void Dispose()
    {
        _key.Dispose();
        GC.SuppressFinalize(this);
    }
}
