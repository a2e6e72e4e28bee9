using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Herald.Core.Credentials;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Security;
using Herald.Providers.Http;
using Herald.Server.Json;
using Microsoft.Extensions.Options;

namespace Herald.Server.Endpoints;

/// <summary>Settings of the feedback webhooks (<c>Herald:Webhooks</c>).</summary>
public sealed class WebhookOptions
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "Herald:Webhooks";

    /// <summary>Attempts per event before it is given up (state failed).</summary>
    public int MaxAttempts { get; set; } = 8;

    /// <summary>The pause after the first failed attempt; doubles per attempt up to <see cref="MaxDelay"/>.</summary>
    public TimeSpan InitialDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The longest pause between attempts.</summary>
    public TimeSpan MaxDelay { get; set; } = TimeSpan.FromHours(1);

    /// <summary>How long one POST may take.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often the outbox is polled when nothing signals new events.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Whether webhooks may reach loopback addresses (tests, a receiver on the same host). Link-local addresses (cloud
    /// metadata services such as 169.254.169.254) are never reached; private networks are, since management servers live there.
    /// </summary>
    public bool AllowLoopback { get; set; }
}

/// <summary>
/// Feedback webhooks: turns recorded outcomes (a registration deactivated by its provider, a notification dead)
/// into events on the durable outbox of the tenants that configured a webhook, and POSTs them with
/// <c>X-Herald-Signature: sha256=&lt;hex HMAC-SHA256 of the body&gt;</c>, retrying with doubling pauses.
/// A receiver must answer 2xx; any other answer or a transport fault is retried until the attempts run out.
/// </summary>
public sealed partial class WebhookSender : BackgroundService
{
    /// <summary>Event type: a registration was deactivated because the provider said its token is dead.</summary>
    public const string RegistrationDeactivated = "registration.deactivated";

    /// <summary>Event type: a notification exhausted its attempts.</summary>
    public const string NotificationDead = "notification.dead";

    private readonly ICredentialStore _store;
    private readonly INotificationQueue _queue;
    private readonly SecretBox _box;
    private readonly TimeProvider _time;
    private readonly IOptionsMonitor<WebhookOptions> _options;
    private readonly ILogger<WebhookSender> _logger;
    private readonly HttpMessageInvoker _http;
    private readonly Channel<DeliveryOutcome> _outcomes = Channel.CreateUnbounded<DeliveryOutcome>(new UnboundedChannelOptions { SingleReader = true });
    private readonly AsyncSignal _wake = new();

    public WebhookSender(
        ICredentialStore store,
        INotificationQueue queue,
        SecretBox box,
        Dispatcher dispatcher,
        TimeProvider time,
        IOptionsMonitor<WebhookOptions> options,
        IOptions<OutboundProxyOptions> proxy,
        ILogger<WebhookSender> logger)
    {
        ArgumentNullException.ThrowIfNull(dispatcher);
        ArgumentNullException.ThrowIfNull(proxy);
        _store = store;
        _queue = queue;
        _box = box;
        _time = time;
        _options = options;
        _logger = logger;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),

            // Checked when connecting, on the addresses DNS gave, so a name that resolves to a forbidden address
            // (now or after a rebind) is refused however the URL was written.
            ConnectCallback = (context, ct) => WebhookAddressGuard.ConnectAsync(context, options.CurrentValue.AllowLoopback, ct),
        };
        OutboundProxy.Apply(handler, proxy.Value);
        _http = new HttpMessageInvoker(handler, disposeHandler: true);
        dispatcher.Completed += OnCompleted;
    }

    /// <summary>The signature header value for <paramref name="body"/> under <paramref name="secret"/>.</summary>
    public static string Sign(string secret, ReadOnlySpan<byte> body)
        => "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), body));

    private void OnCompleted(IReadOnlyList<DeliveryOutcome> batch)
    {
        foreach (var outcome in batch)
        {
            if (outcome.DeactivateRegistration || outcome.State == NotificationState.Dead)
            {
                _outcomes.Writer.TryWrite(outcome);
            }
        }
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var collect = CollectLoopAsync(stoppingToken);
        var deliver = DeliverLoopAsync(stoppingToken);
        await Task.WhenAll(collect, deliver).ConfigureAwait(false);
    }

    private async Task CollectLoopAsync(CancellationToken cancellationToken)
    {
        var reader = _outcomes.Reader;
        var batch = new List<WebhookEvent>();
        try
        {
            while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                batch.Clear();
                while (batch.Count < 500 && reader.TryRead(out var outcome))
                {
                    try
                    {
                        if (await ToEventAsync(outcome, cancellationToken).ConfigureAwait(false) is { } e)
                        {
                            batch.Add(e);
                        }
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        Log.CollectFailed(_logger, ex);
                    }
                }

                for (var attempt = 1; batch.Count > 0; attempt++)
                {
                    try
                    {
                        if (await _store.EnqueueWebhookEventsAsync(batch, cancellationToken).ConfigureAwait(false) > 0)
                        {
                            _wake.Set();
                        }

                        break;
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException && attempt < 10)
                    {
                        Log.CollectFailed(_logger, ex);
                        await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), _time, cancellationToken).ConfigureAwait(false);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Shutting down.
        }
    }

    private async Task<WebhookEvent?> ToEventAsync(DeliveryOutcome outcome, CancellationToken cancellationToken)
    {
        var record = await _queue.GetNotificationAsync(outcome.NotificationId, cancellationToken).ConfigureAwait(false);
        if (record is null)
        {
            return null;
        }

        var type = outcome.DeactivateRegistration ? RegistrationDeactivated : NotificationDead;
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("type", type);
            w.WriteString("tenantId", record.TenantId);
            if (outcome.RegistrationId is not null)
            {
                w.WriteString("registrationId", outcome.RegistrationId);
            }

            w.WriteNumber("notificationId", outcome.NotificationId);
            w.WriteString("platform", Wire.Name(record.Platform));
            if (record.TokenFingerprint is not null)
            {
                w.WriteString("tokenFingerprint", record.TokenFingerprint);
            }

            w.WriteNumber("status", outcome.StatusCode);
            if (outcome.Reason is not null)
            {
                w.WriteString("reason", outcome.Reason);
            }

            w.WriteNumber("attempts", outcome.Attempt);
            if (outcome.TokenInvalidSince is { } since)
            {
                w.WriteString("invalidSince", since.ToString("O", CultureInfo.InvariantCulture));
            }

            w.WriteString("timestamp", outcome.CompletedAt.ToString("O", CultureInfo.InvariantCulture));
            w.WriteEndObject();
        }

        return new WebhookEvent(record.TenantId, type, Encoding.UTF8.GetString(buffer.WrittenSpan), outcome.CompletedAt);
    }

    private async Task DeliverLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            var o = _options.CurrentValue;
            try
            {
                var due = await _store.ClaimWebhookEventsAsync(_time.GetUtcNow(), o.Timeout + TimeSpan.FromSeconds(30), 50, cancellationToken).ConfigureAwait(false);
                if (due.Count > 0)
                {
                    await Parallel.ForEachAsync(due, new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = cancellationToken }, (d, ct) => DeliverAsync(d, o, ct)).ConfigureAwait(false);
                    continue;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.DeliverLoopFailed(_logger, ex);
            }

            try
            {
                await _wake.WaitAsync(o.PollInterval, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async ValueTask DeliverAsync(WebhookDelivery delivery, WebhookOptions o, CancellationToken cancellationToken)
    {
        var webhook = await _store.GetWebhookAsync(delivery.TenantId, cancellationToken).ConfigureAwait(false);
        if (webhook is null)
        {
            await _store.CompleteWebhookEventAsync(delivery.Id, new WebhookAttemptResult(false, null, 0, "NoWebhook"), cancellationToken).ConfigureAwait(false);
            return;
        }

        int status = 0;
        string? error;
        try
        {
            var secret = _box.Open(webhook.SealedSecret, WebhookEndpoints.Purpose);
            var body = Encoding.UTF8.GetBytes(delivery.Body);
            using var request = new HttpRequestMessage(HttpMethod.Post, webhook.Url) { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
            request.Headers.TryAddWithoutValidation("X-Herald-Signature", Sign(secret, body));
            request.Headers.TryAddWithoutValidation("X-Herald-Event", delivery.Type);
            request.Headers.TryAddWithoutValidation("X-Herald-Delivery", delivery.Id.ToString(CultureInfo.InvariantCulture));
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(o.Timeout);
            using var response = await _http.SendAsync(request, timeout.Token).ConfigureAwait(false);
            status = (int)response.StatusCode;
            if (status is >= 200 and < 300)
            {
                await _store.CompleteWebhookEventAsync(delivery.Id, new WebhookAttemptResult(true, null, status, null), CancellationToken.None).ConfigureAwait(false);
                return;
            }

            error = "HTTP " + status.ToString(CultureInfo.InvariantCulture);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return; // the lease runs out and the event is tried again
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException or CryptographicException or UriFormatException)
        {
            error = ex is OperationCanceledException ? "Timeout" : ex.GetType().Name;
        }

        DateTimeOffset? retryAt = null;
        if (delivery.Attempts < Math.Max(1, o.MaxAttempts))
        {
            var ticks = Math.Min(o.MaxDelay.Ticks, o.InitialDelay.Ticks * (1L << Math.Min(20, delivery.Attempts - 1)));
            retryAt = _time.GetUtcNow() + TimeSpan.FromTicks(ticks);
        }
        else
        {
            Log.GaveUp(_logger, delivery.Id, delivery.TenantId, delivery.Attempts, error);
        }

        await _store.CompleteWebhookEventAsync(delivery.Id, new WebhookAttemptResult(false, retryAt, status, error), CancellationToken.None).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        _http.Dispose();
        _wake.Dispose();
        base.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4301, Level = LogLevel.Warning, Message = "Recording webhook events failed")]
        public static partial void CollectFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 4302, Level = LogLevel.Warning, Message = "Delivering webhook events failed; trying again")]
        public static partial void DeliverLoopFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 4303, Level = LogLevel.Warning, Message = "Webhook event {Id} of tenant {TenantId} given up after {Attempts} attempts ({Error})")]
        public static partial void GaveUp(ILogger logger, long id, string tenantId, int attempts, string? error);
    }
}
