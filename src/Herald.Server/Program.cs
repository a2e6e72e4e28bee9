using Herald.Server.Cli;

return await HeraldCli.RunAsync(args);
