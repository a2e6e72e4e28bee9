using System.Data.Common;
using Herald.Core.Connectors;
using Herald.Core.Pipeline;
using Herald.Core.Planning;
using Herald.Core.Settings;
using Herald.Core.Ports;
using Herald.Server.Auth;
using Herald.Server.Endpoints;
using Herald.Server.Json;
using Herald.Server.Workers;
using Herald.Storage;
using Herald.Providers.Apns;
using Herald.Providers.Fcm;
using Herald.Providers.Wns;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Herald.Server.Hosting;

/// <summary>
/// Composes the gateway: one process with ingest (EWS callbacks, API), the durable queue and the
/// dispatcher. Used by <c>herald serve</c>, <c>herald demo</c> and the end-to-end tests alike.
/// </summary>
public static partial class HeraldApp
{
    /// <summary>Builds the web application (not started, not migrated).</summary>
    /// <param name="args">Host arguments: <c>--urls</c>, <c>--Herald:Key=value</c>, …</param>
    /// <param name="configFile">An optional JSON file of the appsettings shape.</param>
    /// <param name="configure">Extra configuration (tests and the demo override settings and services here).</param>
    public static WebApplication Build(string[] args, string? configFile = null, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
        });

        if (configFile is not null)
        {
            builder.Configuration.AddJsonFile(Path.GetFullPath(configFile), optional: false, reloadOnChange: true);

            // Command-line values win over the file, as everywhere in .NET configuration.
            builder.Configuration.AddCommandLine(args);
        }

        if (builder.Configuration["urls"] is null && builder.Configuration["ASPNETCORE_URLS"] is null)
        {
            builder.WebHost.UseUrls("http://127.0.0.1:8080");
        }

        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
        });

        // Herald:Logging:Json=true: one JSON object per line (for log shippers); read when the logger starts, so tests can set it too.
        builder.Logging.AddJsonConsole(o =>
        {
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
        });
        builder.Services.AddOptions<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>().Configure<IConfiguration>((o, configuration) =>
        {
            o.FormatterName = configuration.GetValue<bool>("Herald:Logging:Json")
                ? Microsoft.Extensions.Logging.Console.ConsoleFormatterNames.Json
                : Microsoft.Extensions.Logging.Console.ConsoleFormatterNames.Simple;
        });

        // HTTPS from a certificate file (Herald:Tls), for deployments without a TLS-terminating proxy. Read when Kestrel
        // starts, so configuration added by callers (tests, the demo) counts.
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.ConfigureKestrel((context, kestrel) =>
            EdgeSetup.ConfigureHttps(kestrel, context.Configuration.GetSection(TlsOptions.Section).Get<TlsOptions>() ?? new TlsOptions()));

        // Behind a reverse proxy: X-Forwarded-For/-Proto are honoured only from the proxies named here.
        builder.Services.AddOptions<ForwardedHeadersOptions>().Configure<IConfiguration>((o, configuration) =>
            (configuration.GetSection(ForwardedHeadersSettings.Section).Get<ForwardedHeadersSettings>() ?? new ForwardedHeadersSettings()).ApplyTo(o));

        AddHerald(builder);
        configure?.Invoke(builder);

        var app = builder.Build();
        if ((app.Configuration.GetSection(ForwardedHeadersSettings.Section).Get<ForwardedHeadersSettings>() ?? new ForwardedHeadersSettings()).Enabled)
        {
            app.UseForwardedHeaders();
        }

        MapEndpoints(app);
        return app;
    }

    /// <summary>Migrates the store, makes sure an admin key exists, recovers leases, then starts listening.</summary>
    /// <returns>A newly generated admin key to show once, or null.</returns>
    public static async Task<string?> StartAsync(WebApplication app, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(app);
        var services = app.Services;
        await services.GetRequiredService<IStoreAdmin>().MigrateAsync(cancellationToken);
        var options = services.GetRequiredService<IOptions<HeraldOptions>>().Value;
        var time = services.GetRequiredService<TimeProvider>();
        await services.GetRequiredService<SettingsMonitor>().RefreshAsync(cancellationToken);
        await services.GetRequiredService<Herald.Core.Credentials.CredentialRegistry>().RefreshAsync(cancellationToken);
        var generated = await AdminKeyBootstrap.EnsureAsync(services.GetRequiredService<IAccessStore>(), options.AdminApiKey, time, cancellationToken);

        var store = services.GetRequiredService<IHeraldStore>();
        if (store.IsSingleNode)
        {
            // An embedded file has one node: any lease in it belongs to a process that is gone.
            await services.GetRequiredService<INotificationQueue>().ReleaseExpiredLeasesAsync(DateTimeOffset.MaxValue, cancellationToken);
            try
            {
                await services.GetRequiredService<IFarmStore>().EndAllLeasesAsync(cancellationToken);
            }
            catch (DbException)
            {
                // Only a head start: without it the dead process's work leases expire within Herald:Farm:LeaseTtl.
            }
        }

        await app.StartAsync(cancellationToken);
        return generated;
    }

    private static void AddHerald(WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<HeraldOptions>().BindConfiguration(HeraldOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<PlannerOptions>().BindConfiguration("Herald:Planner");
        services.AddOptions<DispatchOptions>().BindConfiguration("Herald:Dispatch");
        services.AddOptions<RetryOptions>().BindConfiguration("Herald:Retry");
        services.AddOptions<IngestOptions>().BindConfiguration("Herald:Ingest");
        services.AddOptions<RateLimitOptions>().BindConfiguration(RateLimitOptions.Section).ValidateDataAnnotations().ValidateOnStart();

        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<HeraldOptions>>().Value;
            return new NodeIdentity(string.IsNullOrWhiteSpace(o.NodeName) ? Environment.MachineName : o.NodeName);
        });

        // Secrets at rest: a key ring outside the database.
        services.AddSingleton(sp => SecretKeys.Load(sp.GetRequiredService<IOptions<HeraldOptions>>().Value));

        // Storage: one store object serves every port.
        services.AddOptions<Storage.Postgres.PostgresStoreOptions>().BindConfiguration("Herald:Postgres");
        services.AddSingleton(sp => HeraldStore.Open(
            sp.GetRequiredService<IOptions<HeraldOptions>>().Value.Database,
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILoggerFactory>(),
            sp.GetRequiredService<IOptions<Storage.Postgres.PostgresStoreOptions>>().Value));
        services.AddSingleton<IIngestStore>(sp => sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<INotificationQueue>(sp => sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<IRegistrationStore>(sp => sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<IAccessStore>(sp => sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<IStoreAdmin>(sp => sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<ISettingsStore>(sp => sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<IThrottleStore>(sp => sp.GetRequiredService<IHeraldStore>());

        // Mailbox sources (EWS streaming, Graph, Dovecot): connectors and the registrations behind them. These ports are
        // not on IHeraldStore yet (the PostgreSQL store is gaining them); a store without them fails here, clearly.
        services.AddSingleton(sp => (IConnectorStore)sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton(sp => (ICredentialStore)sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton(sp => new Herald.Core.Credentials.CredentialRegistry(
            sp.GetRequiredService<ICredentialStore>(),
            sp.GetRequiredService<Herald.Core.Security.SecretBox>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<Herald.Core.Credentials.CredentialRegistry>>()));
        services.AddSingleton(sp => (IMailboxDirectory)sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<ConnectorService>();
        services.AddSingleton(sp =>
        {
            // Registration changes, for the source workers: this node's API raises them; a shared database (PostgreSQL
            // LISTEN/NOTIFY) adds those committed through any node, and a "re-read everything" when its listener reconnects.
            var changes = new Herald.Core.Registrations.RegistrationChanges();
            if (sp.GetRequiredService<IHeraldStore>() is IRegistrationChangeFeed feed)
            {
                feed.RegistrationChanged += changes.Notify;
                feed.RegistrationChangesMissed += changes.NotifyAll;
            }

            return changes;
        });
        services.AddSingleton<IPreviewCache, PreviewCache>(_ => new PreviewCache());

        // One APNs provider token per signing key for the whole farm and across restarts (registered before the provider's default).
        services.AddSingleton(sp => (ISharedTokenStore)sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<IApnsTokenCache, SharedApnsTokenCache>();

        // The pipeline.
        services.AddSingleton(sp =>
        {
            // A shared database tells this node about other nodes' work (PostgreSQL LISTEN/NOTIFY): a hint
            // on top of the dispatcher's polling, which stays on.
            var signal = new QueueSignal();
            if (sp.GetRequiredService<IHeraldStore>() is Storage.Postgres.IQueueWakeSource wake)
            {
                wake.QueueWake += signal.Notify;
            }

            return signal;
        });
        services.AddSingleton<IIngestPlanner, MailEventPlanner>();
        services.AddSingleton<IngestService>();
        services.AddSingleton<Dispatcher>();
        services.AddSingleton<LeaseReaper>();
        services.AddSingleton<SettingsMonitor>();
        services.AddSingleton<ILiveConnectionSettings>(sp => sp.GetRequiredService<SettingsMonitor>());
        services.AddSingleton<LaneThrottle>();
        services.AddSingleton<CredentialHealth>();
        services.AddSingleton<Herald.Core.Connectors.ConnectorHealth>();
        services.AddHostedService<PipelineWorker>();

        // The farm: heartbeat and load, work leases, leader election and leader duties (also a farm of one on SQLite).
        FarmServices.Add(services);

        // Mail sources that call Herald or are polled by it: Microsoft Graph (subscriptions, notifications) and Dovecot.
        MailSourceServices.AddGraphAndDovecot(services);

        // EWS streaming: Herald holds streaming subscriptions with a service account (one work lease per connector).
        EwsStreamingServices.Add(services);

        // Metrics: one meter per gateway, exported at /metrics and sampled for the console's dashboard.
        services.AddSingleton(sp =>
        {
            var metrics = new Herald.Core.Metrics.HeraldMetrics(sp.GetRequiredService<TimeProvider>());
            var credentials = sp.GetRequiredService<Herald.Core.Credentials.CredentialRegistry>();

            // Certificates expire; the label is the thumbprint's prefix (public), never the tenant.
            metrics.AddCredentialExpirySource(() => credentials.All
                .Where(c => c.Stored.ExpiresAt is not null)
                .Select(c => new Herald.Core.Metrics.CredentialExpiry(
                    Herald.Core.Metrics.HeraldMetrics.PlatformName(c.Platform),
                    c.Stored.Thumbprint is { Length: >= 16 } t ? "sha256:" + t[..16].ToLowerInvariant() : c.Stored.Kind,
                    c.Stored.ExpiresAt!.Value)));
            return metrics;
        });
        services.AddSingleton(sp => new Herald.Core.Metrics.MetricsCollector(
            sp.GetRequiredService<Herald.Core.Metrics.HeraldMetrics>(),
            sp.GetRequiredService<IOptions<HeraldOptions>>().Value.Region,
            sp.GetRequiredService<NodeIdentity>().NodeName));
        services.AddSingleton<QueueGauges>();
        services.AddSingleton<StatsSampler>();
        services.AddHostedService(sp => sp.GetRequiredService<StatsSampler>());

        // Providers: all are registered; without a credential their sends wait in retry and /readyz says why.
        services.AddApnsProvider().BindConfiguration(ApnsOptions.SectionName).ValidateOnStart();
        services.AddFcmProvider().BindConfiguration("Herald:Fcm").ValidateOnStart();
        services.AddWnsProvider().BindConfiguration("Herald:Wns").ValidateOnStart();
        services.AddOptions<Herald.Providers.Http.OutboundProxyOptions>().BindConfiguration(Herald.Providers.Http.OutboundProxyOptions.SectionName)
            .Validate(o => Herald.Providers.Http.OutboundProxyOptions.Validate(o).Count == 0, "Herald:Proxy is invalid: Url must be an absolute http(s) URL, and Username and Password go together.")
            .ValidateOnStart();
        services.AddOptions<WebhookOptions>().BindConfiguration(WebhookOptions.SectionName);
        services.AddHostedService<WebhookSender>();

        // The API.
        services.AddSingleton<ApiKeyAuthenticator>();
        services.AddSingleton<PublicUrls>();
        services.AddSingleton<ProviderHealth>();
        services.AddProblemDetails();
        services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.TypeInfoResolverChain.Insert(0, HeraldJsonContext.Default);
            o.SerializerOptions.TypeInfoResolverChain.Insert(1, QueueJsonContext.Default);
            o.SerializerOptions.TypeInfoResolverChain.Insert(2, ConnectorJsonContext.Default);
            o.SerializerOptions.DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull;
            o.SerializerOptions.MaxDepth = 32;
        });
        services.AddOpenApi();
        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = context.Configuration.GetValue("Herald:MaxRequestBodyBytes", 1024 * 1024);
        });
    }

    private static void MapEndpoints(WebApplication app)
    {
        app.UseMiddleware<ErrorMiddleware>();
        app.UseMiddleware<RequestLimits>();
        app.MapOpenApi("/openapi/{documentName}.json");
        Admin.AdminConsole.Map(app);
        MetricsEndpoints.Map(app);

        var v1 = app.MapGroup("/v1").AddEndpointFilter(async (context, next) =>
        {
            var http = context.HttpContext;
            var auth = http.RequestServices.GetRequiredService<ApiKeyAuthenticator>();
            var caller = await auth.AuthenticateAsync(http, http.RequestAborted);
            if (caller is null)
            {
                http.Response.Headers.WWWAuthenticate = "Bearer";
                return Problems.Unauthorized();
            }

            CallerContext.Set(http, caller);
            return await next(context);
        });

        RegistrationEndpoints.Map(v1);
        RegistrationSearchEndpoints.Map(v1);
        ConnectorStateEndpoints.Map(v1);
        NotificationEndpoints.Map(v1);
        TenantEndpoints.Map(v1);
        CredentialEndpoints.Map(v1);
        WebhookEndpoints.Map(v1);
        ConnectorEndpoints.Map(v1);
        SettingsEndpoints.Map(v1);
        NodeEndpoints.Map(v1);
        HealthEndpoints.Map(app, v1);
        StatsEndpoints.Map(v1);
        EwsEndpoints.Map(app);
        GraphEndpoints.Map(app);
        DovecotEndpoints.Map(app);
    }

    /// <summary>
    /// Turns failures that escape an endpoint into clear answers: a body over the limit is 413, a store
    /// that cannot be reached is 503 with Retry-After (the node recovers by itself), anything else 500.
    /// </summary>
    private sealed partial class ErrorMiddleware(RequestDelegate next, ILogger<ErrorMiddleware> logger)
    {
        public async Task InvokeAsync(HttpContext context)
        {
            try
            {
                await next(context);
            }
            catch (BadHttpRequestException ex) when (!context.Response.HasStarted)
            {
                await WriteAsync(context, ex.StatusCode, ex.StatusCode == StatusCodes.Status413PayloadTooLarge
                    ? "The request body is larger than this server accepts."
                    : "The request could not be read.");
            }
            catch (DbException ex) when (!context.Response.HasStarted)
            {
                Log.StoreUnavailable(logger, ex);
                await WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "The database is unavailable; retry shortly.", retryAfter: "5");
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                // The client went away.
            }
            catch (Exception ex) when (!context.Response.HasStarted)
            {
                Log.Unhandled(logger, ex);
                await WriteAsync(context, StatusCodes.Status500InternalServerError, "An unexpected error occurred.");
            }
        }

        private static Task WriteAsync(HttpContext context, int status, string detail, string? retryAfter = null)
        {
            context.Response.Clear();
            context.Response.StatusCode = status;
            if (retryAfter is not null)
            {
                context.Response.Headers.RetryAfter = retryAfter;
            }

            return TypedResults.Problem(detail, statusCode: status).ExecuteAsync(context);
        }

        private static partial class Log
        {
            [LoggerMessage(EventId = 4001, Level = LogLevel.Error, Message = "The store is unavailable")]
            public static partial void StoreUnavailable(ILogger logger, Exception exception);

            [LoggerMessage(EventId = 4002, Level = LogLevel.Error, Message = "Unhandled error")]
            public static partial void Unhandled(ILogger logger, Exception exception);
        }
    }
}
