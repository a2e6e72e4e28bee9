using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>The registration search by token fingerprint (migration 0011), the same in every dialect.</summary>
public abstract partial class StoreContractTests
{
    private IRegistrationSearch Search => (IRegistrationSearch)Store;

    [Fact]
    public async Task Search_ByFingerprint_FindsTheTenantsRegistrationsWithThatTokenOnly()
    {
        await Store.CreateTenantAsync(new Tenant("contoso", "Contoso", Time.GetUtcNow()), Ct);
        var one = await CreateRegistrationAsync("reg-1", "cb_one");
        var twin = NewRegistration("reg-2");
        twin.Token = one.Token; // two apps on one device token: both are listed
        await Store.CreateAsync(twin, null, Ct);
        await CreateRegistrationAsync("reg-3", "cb_three");
        var foreign = new Registration
        {
            Id = "reg-4",
            TenantId = "contoso",
            Platform = Platform.Apns,
            Token = one.Token,
            Topic = one.Topic,
            Source = SourceKind.None,
        };
        await Store.CreateAsync(foreign, null, Ct);
        var fp = TokenFingerprint.Of(one.Token)!.Value;

        var found = await Search.SearchRegistrationsAsync(new RegistrationQuery(Tenant, fp, null, 50), Ct);
        Assert.Equal(["reg-1", "reg-2"], found.Select(r => r.Id));
        Assert.All(found, r => Assert.Equal(Redact.Token(one.Token), TokenFingerprint.Format(TokenFingerprint.Of(r.Token)!.Value)));

        Assert.Equal(["reg-4"], (await Search.SearchRegistrationsAsync(new RegistrationQuery("contoso", fp, null, 50), Ct)).Select(r => r.Id));
        Assert.Empty(await Search.SearchRegistrationsAsync(new RegistrationQuery("nobody", fp, null, 50), Ct));
        Assert.Empty(await Search.SearchRegistrationsAsync(new RegistrationQuery(Tenant, fp ^ 1, null, 50), Ct));
    }

    [Fact]
    public async Task Search_AfterRotationAndDelete_FollowsTheCurrentToken()
    {
        var registration = await CreateRegistrationAsync("reg-1", "cb_one");
        var oldFp = TokenFingerprint.Of(registration.Token)!.Value;
        registration.Token = "ffeeddccbbaa99887766554433221100";
        Assert.True(await Store.UpdateAsync(registration, Ct));

        Assert.Empty(await Search.SearchRegistrationsAsync(new RegistrationQuery(Tenant, oldFp, null, 10), Ct));
        var newFp = TokenFingerprint.Of(registration.Token)!.Value;
        Assert.Equal("reg-1", Assert.Single(await Search.SearchRegistrationsAsync(new RegistrationQuery(Tenant, newFp, null, 10), Ct)).Id);

        Assert.True(await Store.DeleteAsync(Tenant, "reg-1", Time.GetUtcNow(), Ct));
        Assert.Empty(await Search.SearchRegistrationsAsync(new RegistrationQuery(Tenant, newFp, null, 10), Ct));
        Assert.Empty(await Search.SearchRegistrationsAsync(new RegistrationQuery(Tenant, null, null, 10), Ct));
    }

    [Fact]
    public async Task Search_WithoutFingerprint_PagesThroughTheTenantById()
    {
        foreach (var id in new[] { "reg-c", "reg-a", "reg-e", "reg-b", "reg-d" })
        {
            await CreateRegistrationAsync(id, "cb_" + id);
        }

        var first = await Search.SearchRegistrationsAsync(new RegistrationQuery(Tenant, null, null, 2), Ct);
        Assert.Equal(["reg-a", "reg-b"], first.Select(r => r.Id));
        var second = await Search.SearchRegistrationsAsync(new RegistrationQuery(Tenant, null, first[^1].Id, 2), Ct);
        Assert.Equal(["reg-c", "reg-d"], second.Select(r => r.Id));
        var last = await Search.SearchRegistrationsAsync(new RegistrationQuery(Tenant, null, second[^1].Id, 2), Ct);
        Assert.Equal(["reg-e"], last.Select(r => r.Id));
    }
}
