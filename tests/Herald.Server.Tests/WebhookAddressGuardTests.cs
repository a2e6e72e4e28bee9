using System.Net;
using Herald.Server.Endpoints;
using Xunit;

namespace Herald.Server.Tests;

public sealed class WebhookAddressGuardTests
{
    [Theory]
    [InlineData("169.254.169.254", false)] // cloud metadata
    [InlineData("169.254.1.1", false)]
    [InlineData("0.0.0.0", false)]
    [InlineData("224.0.0.1", false)]
    [InlineData("255.255.255.255", false)]
    [InlineData("fe80::1", false)]
    [InlineData("::ffff:169.254.169.254", false)]
    [InlineData("127.0.0.1", false)]
    [InlineData("::1", false)]
    [InlineData("10.1.2.3", true)] // management servers live on private networks
    [InlineData("192.168.1.10", true)]
    [InlineData("203.0.113.7", true)]
    [InlineData("2001:db8::1", true)]
    public void Addresses(string address, bool allowed)
        => Assert.Equal(allowed, WebhookAddressGuard.IsAllowed(IPAddress.Parse(address), allowLoopback: false));

    [Fact]
    public void Loopback_OnlyWhenAllowed()
    {
        Assert.True(WebhookAddressGuard.IsAllowed(IPAddress.Loopback, allowLoopback: true));
        Assert.False(WebhookAddressGuard.IsAllowed(IPAddress.Parse("169.254.169.254"), allowLoopback: true));
    }

    [Fact]
    public async Task Connect_ToAForbiddenAddress_IsRefusedBeforeAnyByteIsSent()
    {
        using var handler = new SocketsHttpHandler { ConnectCallback = (c, ct) => WebhookAddressGuard.ConnectAsync(c, allowLoopback: false, ct) };
        using var client = new HttpClient(handler);
        var error = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync("http://localhost:9/hook", TestContext.Current.CancellationToken));
        Assert.Contains("may not reach", error.ToString(), StringComparison.Ordinal);
    }
}
