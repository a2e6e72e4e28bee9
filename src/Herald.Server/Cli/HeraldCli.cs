using System.CommandLine;
using Herald.Core.Ports;
using Herald.Server.Hosting;
using Microsoft.Extensions.Options;

namespace Herald.Server.Cli;

/// <summary>The <c>herald</c> command line (CONTRACT §1). Exit codes: 0 success, 1 failure, 2 usage error.</summary>
public static class HeraldCli
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int UsageError = 2;

    public static async Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("Herald: an open-source enterprise mail push-notification gateway.");
        root.Subcommands.Add(ServeCommand());
        root.Subcommands.Add(MigrateCommand());
        root.Subcommands.Add(DemoCommand.Create());
        var bench = BenchCommand.Create();
        bench.Subcommands.Add(BenchFarmCommand.Create());
        root.Subcommands.Add(bench);
        root.Subcommands.Add(DoctorCommand.Create());

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await Console.Error.WriteLineAsync("herald: " + error.Message);
            }

            await Console.Error.WriteLineAsync("Run 'herald --help' for usage.");
            return UsageError;
        }

        try
        {
            return await parse.InvokeAsync();
        }
        catch (OptionsValidationException ex)
        {
            await Console.Error.WriteLineAsync("herald: invalid configuration: " + string.Join("; ", ex.Failures));
            return Failure;
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or NotSupportedException or UnauthorizedAccessException or System.Data.Common.DbException)
        {
            await Console.Error.WriteLineAsync("herald: " + ex.Message);
            return Failure;
        }
    }

    /// <summary>The options every gateway verb shares: --urls, --config, and --Herald:Key=value pass-through.</summary>
    internal sealed record HostOptions(Option<string?> Urls, Option<string?> Config)
    {
        public static HostOptions AddTo(Command command)
        {
            var urls = new Option<string?>("--urls") { Description = "Addresses to listen on (default http://127.0.0.1:8080)." };
            var config = new Option<string?>("--config") { Description = "A JSON configuration file (the appsettings shape)." };
            command.Options.Add(urls);
            command.Options.Add(config);
            command.TreatUnmatchedTokensAsErrors = false; // --Herald:Key=value goes to configuration
            return new HostOptions(urls, config);
        }

        public string[] HostArgs(ParseResult parse)
        {
            var list = new List<string>(parse.UnmatchedTokens);
            if (parse.GetValue(Urls) is { } urls)
            {
                list.Add("--urls=" + urls);
            }

            return [.. list];
        }
    }

    private static Command ServeCommand()
    {
        var command = new Command("serve", "Run the gateway.");
        var host = HostOptions.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var app = HeraldApp.Build(host.HostArgs(parse), parse.GetValue(host.Config));
            var generated = await HeraldApp.StartAsync(app, cancellationToken);
            if (generated is not null)
            {
                Console.WriteLine($"Generated the admin API key (shown once, stored hashed): {generated}");
            }

            Console.WriteLine("Herald is listening on " + string.Join(", ", app.Urls));
            await app.WaitForShutdownAsync(cancellationToken);
            return Success;
        });
        return command;
    }

    private static Command MigrateCommand()
    {
        var command = new Command("migrate", "Create or migrate the database, then exit.");
        var host = HostOptions.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var app = HeraldApp.Build(host.HostArgs(parse), parse.GetValue(host.Config));
            await app.Services.GetRequiredService<IStoreAdmin>().MigrateAsync(cancellationToken);
            Console.WriteLine("Database is up to date.");
            return Success;
        });
        return command;
    }
}
