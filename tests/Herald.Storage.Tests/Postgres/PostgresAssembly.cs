using Herald.Testing;
using Xunit;

// One throw-away PostgreSQL cluster for the whole assembly; each test takes a fresh database from it.
[assembly: AssemblyFixture(typeof(PostgresServer))]
