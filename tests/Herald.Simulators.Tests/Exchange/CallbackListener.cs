using System.Collections.Concurrent;
using System.Text;
using System.Xml.Linq;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Herald.Simulators.Tests.Exchange;

/// <summary>How the test listener answers the next SendNotification posts (public: a theory parameter).</summary>
public enum ListenerReply
{
    Ok,
    Unsubscribe,
    ServiceUnavailable,
    Garbage,
    Soap12Ok,
}

/// <summary>One request the listener received.</summary>
internal sealed record ReceivedCallback(string Method, string Path, string? ContentType, string? SoapAction, bool HasAuthorization, byte[] Body)
{
    public static readonly XNamespace M = "http://schemas.microsoft.com/exchange/services/2006/messages";
    public static readonly XNamespace T = "http://schemas.microsoft.com/exchange/services/2006/types";

    public XDocument Xml => XDocument.Parse(Encoding.UTF8.GetString(Body));

    public XElement Notification => Xml.Descendants(M + "Notification").Single();

    public IReadOnlyList<XElement> Events => Notification.Elements().Where(e => e.Name.LocalName.EndsWith("Event", StringComparison.Ordinal)).ToList();

    public IReadOnlyList<string> EventNames => Events.Select(e => e.Name.LocalName).ToList();

    public string PreviousWatermark => Notification.Element(T + "PreviousWatermark")!.Value;

    public string SubscriptionId => Notification.Element(T + "SubscriptionId")!.Value;
}

/// <summary>A stand-in for Herald's callback endpoint: Kestrel on 127.0.0.1, an ephemeral port, scripted answers.</summary>
internal sealed class CallbackListener : IAsyncDisposable
{
    private const string Soap11 = "http://schemas.xmlsoap.org/soap/envelope/";
    private const string Soap12 = "http://www.w3.org/2003/05/soap-envelope";

    private readonly WebApplication _app;
    private readonly ConcurrentQueue<ReceivedCallback> _received = new();
    private volatile ListenerReply _reply = ListenerReply.Ok;

    private CallbackListener(WebApplication app) => _app = app;

    public Uri BaseAddress { get; private set; } = null!;

    public ListenerReply Reply
    {
        get => _reply;
        set => _reply = value;
    }

    public IReadOnlyList<ReceivedCallback> Received => [.. _received];

    public Uri CallbackUrl(string key = "k3y") => new(BaseAddress, "/ews/notify/" + key);

    public static async Task<CallbackListener> StartAsync(CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var listener = new CallbackListener(app);
        app.MapPost("/ews/notify/{key}", listener.HandleAsync);
        await app.StartAsync(cancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        listener.BaseAddress = new Uri(address);
        return listener;
    }

    private async Task HandleAsync(HttpContext context)
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body, context.RequestAborted);
        _received.Enqueue(new ReceivedCallback(
            context.Request.Method,
            context.Request.Path.Value ?? "",
            context.Request.ContentType,
            context.Request.Headers["SOAPAction"].ToString(),
            context.Request.Headers.ContainsKey("Authorization"),
            body.ToArray()));

        switch (_reply)
        {
            case ListenerReply.ServiceUnavailable:
                context.Response.StatusCode = 503;
                return;
            case ListenerReply.Garbage:
                context.Response.ContentType = "text/xml; charset=utf-8";
                await context.Response.WriteAsync("<html>not a SOAP answer", context.RequestAborted);
                return;
            case ListenerReply.Soap12Ok:
                context.Response.ContentType = "application/soap+xml; charset=utf-8";
                await context.Response.WriteAsync(Result(Soap12, "OK"), context.RequestAborted);
                return;
            default:
                context.Response.ContentType = "text/xml; charset=utf-8";
                await context.Response.WriteAsync(Result(Soap11, _reply == ListenerReply.Unsubscribe ? "Unsubscribe" : "OK"), context.RequestAborted);
                return;
        }
    }

    private static string Result(string envelopeNamespace, string status) =>
        $"""<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{envelopeNamespace}"><s:Body><m:SendNotificationResult xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:SubscriptionStatus>{status}</m:SubscriptionStatus></m:SendNotificationResult></s:Body></s:Envelope>""";

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
    }
}
