namespace Herald.Sources.Ews.Streaming;

/// <summary>Where a mailbox's subscriptions must live: its EWS URL and Autodiscover GroupingInformation.</summary>
/// <param name="Address">The primary SMTP address.</param>
/// <param name="EwsUrl">The EWS URL.</param>
/// <param name="GroupingInformation">The affinity grouping value (empty when unknown: static EWS URL or no value).</param>
public sealed record EwsMailboxPlacement(string Address, Uri EwsUrl, string GroupingInformation)
{
    /// <summary>The grouping key: mailboxes with the same key may share a group.</summary>
    public string Key => EwsGrouping.KeyOf(EwsUrl, GroupingInformation);
}

/// <summary>A planned subscription group.</summary>
/// <param name="Key">EWS URL and GroupingInformation.</param>
/// <param name="EwsUrl">The EWS URL.</param>
/// <param name="AnchorMailbox">The alphabetically first member: X-AnchorMailbox of every request of the group.</param>
/// <param name="Members">The members, alphabetically, at most the group size.</param>
public sealed record EwsGroupPlan(string Key, Uri EwsUrl, string AnchorMailbox, IReadOnlyList<string> Members);

/// <summary>
/// Microsoft's affinity procedure: put mailboxes with the same ExternalEwsUrl and GroupingInformation together, split
/// groups over 200, and anchor each group on its alphabetically first address.
/// </summary>
public static class EwsGrouping
{
    /// <summary>The most subscriptions one GetStreamingEvents connection (hence one group) may carry.</summary>
    public const int MaxPerConnection = 200;

    /// <summary>The grouping key of a placement.</summary>
    public static string KeyOf(Uri ewsUrl, string groupingInformation)
    {
        ArgumentNullException.ThrowIfNull(ewsUrl);
        return ewsUrl.GetLeftPart(UriPartial.Path).ToLowerInvariant() + "|" + groupingInformation;
    }

    /// <summary>The groups for <paramref name="mailboxes"/>: by key, addresses sorted (ordinal, case-insensitive), chunks of <paramref name="maxGroupSize"/>.</summary>
    public static IReadOnlyList<EwsGroupPlan> Plan(IEnumerable<EwsMailboxPlacement> mailboxes, int maxGroupSize = MaxPerConnection)
    {
        ArgumentNullException.ThrowIfNull(mailboxes);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxGroupSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxGroupSize, MaxPerConnection);
        var plans = new List<EwsGroupPlan>();
        foreach (var byKey in mailboxes.GroupBy(m => m.Key, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var sorted = byKey
                .Select(m => m.Address)
                .Distinct(StringComparer.OrdinalIgnoreCase)
                .Order(StringComparer.OrdinalIgnoreCase)
                .ToList();
            var url = byKey.First().EwsUrl;
            for (var i = 0; i < sorted.Count; i += maxGroupSize)
            {
                var members = sorted.GetRange(i, Math.Min(maxGroupSize, sorted.Count - i));
                plans.Add(new EwsGroupPlan(byKey.Key, url, members[0], members));
            }
        }

        return plans;
    }
}
