using System.Collections.Concurrent;
using Herald.Core.Ports;

namespace Herald.Core.Planning;

/// <summary>
/// Subjects and senders for preview pushes, held in memory only: the planner puts the newest message's preview here
/// for a registration, the dispatcher takes it when it sends. Never written to the database; after a restart (or once
/// an entry has aged out) the device simply gets the generic alert.
/// </summary>
public interface IPreviewCache
{
    /// <summary>Remembers the newest preview for the registration until <paramref name="expiresAt"/>.</summary>
    void Put(string registrationId, MailPreview preview, DateTimeOffset expiresAt);

    /// <summary>The registration's preview if one is held and not expired.</summary>
    bool TryGet(string registrationId, DateTimeOffset now, out MailPreview preview);
}

/// <summary>A bounded in-memory <see cref="IPreviewCache"/>.</summary>
public sealed class PreviewCache(int capacity = 100_000) : IPreviewCache
{
    private readonly ConcurrentDictionary<string, (MailPreview Preview, DateTimeOffset ExpiresAt)> _entries = new(StringComparer.Ordinal);

    /// <summary>How many previews are held.</summary>
    public int Count => _entries.Count;

    /// <inheritdoc />
    public void Put(string registrationId, MailPreview preview, DateTimeOffset expiresAt)
    {
        ArgumentNullException.ThrowIfNull(registrationId);
        ArgumentNullException.ThrowIfNull(preview);
        if (_entries.Count >= capacity && !_entries.ContainsKey(registrationId))
        {
            Trim(expiresAt - TimeSpan.FromDays(36500));
            if (_entries.Count >= capacity)
            {
                return; // full of live previews: this device gets the generic alert
            }
        }

        _entries[registrationId] = (preview, expiresAt);
    }

    /// <inheritdoc />
    public bool TryGet(string registrationId, DateTimeOffset now, out MailPreview preview)
    {
        if (_entries.TryGetValue(registrationId, out var entry) && entry.ExpiresAt > now)
        {
            preview = entry.Preview;
            return true;
        }

        preview = null!;
        return false;
    }

    /// <summary>Drops entries that expired before <paramref name="now"/>.</summary>
    public void Trim(DateTimeOffset now)
    {
        foreach (var pair in _entries)
        {
            if (pair.Value.ExpiresAt <= now)
            {
                _entries.TryRemove(pair);
            }
        }
    }
}
