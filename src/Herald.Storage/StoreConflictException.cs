namespace Herald.Storage;

/// <summary>
/// A row could not be created because one with the same identity already exists (registration id,
/// callback key hash, tenant id, API key id or hash). The API answers 409.
/// </summary>
public sealed class StoreConflictException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public StoreConflictException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with the database error that caused it.</summary>
    public StoreConflictException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
