// The command-line program: `grpo <command>`. With no command it runs `demo`, the main job.
// One file per command in Cli/; each exposes Create() returning its System.CommandLine Command.
using System.CommandLine;

namespace Grpo.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("Grpo: GRPO (DeepSeekMath's Group Relative Policy Optimization) from scratch in C#");
        foreach (var command in Commands()) root.Subcommands.Add(command);
        // No command: the main job.
        if (args.Length == 0 || args[0].StartsWith('-') && args[0] is not ("--help" or "-h" or "-?" or "--version"))
            args = ["demo", .. args];
        return root.Parse(args).Invoke();
    }

    public static IEnumerable<Command> Commands()
    {
        yield return DemoCommand.Create();
        yield return SftCommand.Create();
        yield return EvalCommand.Create();
        yield return GrpoCommand.Create();
        yield return BenchCommand.Create();
        yield return ExplainCommand.Create();
        yield return RewardCommand.Create();
        yield return SampleCommand.Create();
        yield return CheckCommand.Create();
        yield return TokenizeCommand.Create();
        yield return ExperimentCommand.Create();
    }
}
