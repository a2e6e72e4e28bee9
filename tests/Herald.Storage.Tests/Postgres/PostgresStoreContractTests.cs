using Herald.Storage.Postgres;
using Herald.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace Herald.Storage.Tests.Postgres;

/// <summary>The store contract on PostgreSQL: every test on a fresh database of the assembly's throw-away cluster.</summary>
public sealed class PostgresStoreContractTests(PostgresServer server) : StoreContractTests
{
    private string? _connectionString;

    protected override IHeraldStore CreateStore(TimeProvider time)
    {
        _connectionString = server.CreateDatabaseAsync("contract").GetAwaiter().GetResult();
        return new PostgresStore(_connectionString, new PostgresStoreOptions(), time, NullLogger.Instance);
    }

    protected override IHeraldStore ReopenStore(TimeProvider time)
        => new PostgresStore(_connectionString!, new PostgresStoreOptions(), time, NullLogger.Instance);

    protected override async ValueTask DeleteDatabaseAsync()
    {
        if (_connectionString is not null)
        {
            await server.DropDatabaseAsync(_connectionString);
        }
    }
}
