using System.Data.Common;

namespace Herald.Storage;

/// <summary>
/// The store could not start a write in time (the database is locked or stuck). A <see cref="DbException"/>,
/// so callers treat it like any database outage: 503 with Retry-After, and EWS callbacks unacknowledged.
/// </summary>
public sealed class StoreUnavailableException : DbException
{
    public StoreUnavailableException()
    {
    }

    public StoreUnavailableException(string message)
        : base(message)
    {
    }

    public StoreUnavailableException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
