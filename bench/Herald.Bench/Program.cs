using BenchmarkDotNet.Running;
using Herald.Bench;

if (args is ["--breakdown"])
{
    await Breakdown.RunAsync(Console.Out);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
