using BenchmarkDotNet.Running;
using Herald.Bench;

if (args is ["--postgres", var connectionString])
{
    await PostgresTiming.RunAsync(connectionString, Console.Out);
    return;
}

if (args is ["--breakdown"])
{
    await Breakdown.RunAsync(Console.Out);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
