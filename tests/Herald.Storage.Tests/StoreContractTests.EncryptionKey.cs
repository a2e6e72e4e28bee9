using Herald.Core.Notifications;
using Herald.Core.Planning;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Microsoft.Extensions.Options;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>The device's HPKE public key of style preview-encrypted (migration 0010), the same in every dialect.</summary>
public abstract partial class StoreContractTests
{
    [Fact]
    public async Task EncryptionKey_IsStoredRotatedAndCleared_AndReadByEveryRegistrationQuery()
    {
        var first = Hpke.GenerateKeyPair().PublicKey;
        var second = Hpke.GenerateKeyPair().PublicKey;
        var registration = NewRegistration("reg-k", NotificationStyle.PreviewEncrypted);
        registration.EncryptionKey = first;
        await Store.CreateAsync(registration, Secrets.Hash("cb_k"), Ct);
        await CreateRegistrationAsync("reg-plain", "cb_plain");

        var read = await Store.GetAsync(Tenant, "reg-k", Ct);
        Assert.Equal(NotificationStyle.PreviewEncrypted, read!.Style);
        Assert.Equal(first, read.EncryptionKey);
        Assert.Null((await Store.GetAsync(Tenant, "reg-plain", Ct))!.EncryptionKey);
        Assert.Equal(first, (await Store.GetManyAsync(Tenant, ["reg-k", "reg-plain"], Ct))["reg-k"].EncryptionKey);

        read.EncryptionKey = second; // PATCH rotation
        Assert.True(await Store.UpdateAsync(read, Ct));
        await ReopenAsync();
        Assert.Equal(second, (await Store.GetAsync(Tenant, "reg-k", Ct))!.EncryptionKey);

        read.Style = NotificationStyle.Badge;
        read.EncryptionKey = null;
        Assert.True(await Store.UpdateAsync(read, Ct));
        Assert.Null((await Store.GetAsync(Tenant, "reg-k", Ct))!.EncryptionKey);
    }

    [Fact]
    public async Task EncryptionKey_IngestQueuesTheKeyForSealingAtSendTime_NeverThePreview()
    {
        var key = Hpke.GenerateKeyPair().PublicKey;
        var registration = NewRegistration("reg-k", NotificationStyle.PreviewEncrypted);
        registration.EncryptionKey = key;
        await Store.CreateAsync(registration, Secrets.Hash("cb_k"), Ct);
        var previews = new PreviewCache();
        var planner = new MailEventPlanner(Options.Create(new PlannerOptions()), previews);
        var item = NewMailItem("cb_k");
        var withPreview = new IngestItem
        {
            Route = item.Route,
            Notifications = item.Notifications,
            ReceivedAt = item.ReceivedAt,
            Preview = new MailPreview("Secret subject", "Eve") { FromAddress = "eve@example.org" },
        };

        await Store.ApplyIngestBatchAsync([withPreview], planner, Ct);

        Assert.Equal(IngestVerdict.Accepted, withPreview.Verdict);
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(PushKind.Alert, claimed.Content.Kind);
        Assert.True(claimed.Content.UsePreview);
        Assert.Equal(key, claimed.Content.EncryptTo);
        Assert.Null(claimed.Content.Sealed);
        Assert.Null(claimed.Content.Title);
        Assert.Equal("New mail", claimed.Content.Body);
        Assert.True(previews.TryGet("reg-k", Time.GetUtcNow(), out _)); // the preview itself stays in memory
    }
}
