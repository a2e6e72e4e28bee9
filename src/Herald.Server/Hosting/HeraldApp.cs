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
        var generated = await AdminKeyBootstrap.EnsureAsync(services.GetRequiredService<IAccessStore>(), options.AdminApiKey, time, cancellationToken);

        var store = services.GetRequiredService<IHeraldStore>();
        if (store.IsSingleNode)
        {
            // An embedded file has one node: any lease in it belongs to a process that is gone.
            await services.GetRequiredService<INotificationQueue>().ReleaseExpiredLeasesAsync(DateTimeOffset.MaxValue, cancellationToken);
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
        services.AddSingleton(sp => HeraldStore.Open(
            sp.GetRequiredService<IOptions<HeraldOptions>>().Value.Database,
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILoggerFactory>()));
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
        services.AddSingleton(sp => (IMailboxDirectory)sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<ConnectorService>();
        services.AddSingleton<IPreviewCache, PreviewCache>(_ => new PreviewCache());

        // One APNs provider token per signing key for the whole farm and across restarts (registered before the provider's default).
        services.AddSingleton(sp => (ISharedTokenStore)sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<IApnsTokenCache, SharedApnsTokenCache>();

        // The pipeline.
        services.AddSingleton<QueueSignal>();
        services.AddSingleton<IIngestPlanner, MailEventPlanner>();
        services.AddSingleton<IngestService>();
        services.AddSingleton<Dispatcher>();
        services.AddSingleton<LeaseReaper>();
        services.AddSingleton<SettingsMonitor>();
        services.AddSingleton<LaneThrottle>();
        services.AddSingleton<CredentialHealth>();
        services.AddHostedService<PipelineWorker>();

        // Providers: all are registered; without a credential their sends wait in retry and /readyz says why.
        services.AddApnsProvider().BindConfiguration(ApnsOptions.SectionName).ValidateOnStart();
        services.AddFcmProvider().BindConfiguration("Herald:Fcm").ValidateOnStart();
        services.AddWnsProvider().BindConfiguration("Herald:Wns").ValidateOnStart();

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
        app.MapGet("/", () => TypedResults.Text("Herald mail push gateway. API under /v1 (see /openapi/v1.json); health at /healthz and /readyz.\n"))
            .ExcludeFromDescription();

        var v1 = app.MapGroup("/v1").AddEndpointFilter(async (context, next) =>
        {
            var http = context.HttpContext;
            var auth = http.RequestServices.GetRequiredService<ApiKeyAuthenticator>();
            var caller = await auth.AuthenticateAsync(http.Request.Headers.Authorization.ToString(), http.RequestAborted);
            if (caller is null)
            {
                http.Response.Headers.WWWAuthenticate = "Bearer";
                return Problems.Unauthorized();
            }

            CallerContext.Set(http, caller);
            return await next(context);
        });

        RegistrationEndpoints.Map(v1);
        NotificationEndpoints.Map(v1);
        TenantEndpoints.Map(v1);
        ConnectorEndpoints.Map(v1);
        SettingsEndpoints.Map(v1);
        HealthEndpoints.Map(app, v1);
        EwsEndpoints.Map(app);
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
