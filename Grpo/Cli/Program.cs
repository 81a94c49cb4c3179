// The command-line program: `grpo <command>`. With no command it runs `demo`, the main job.
// One file per command in Cli/; each exposes Create() returning its System.CommandLine Command.
using System.CommandLine;

namespace Grpo.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs a command line with its output and errors going to the given writers (tests read them;
    /// progress bars still go to the console).</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var root = new RootCommand("Grpo: GRPO (DeepSeekMath's Group Relative Policy Optimization) from scratch in C#. " +
            "With no command it runs demo; `grpo <command> --help` describes each command.");
        foreach (var command in Commands()) root.Subcommands.Add(command);
        // No command: the main job.
        if (args.Length == 0 || args[0].StartsWith('-') && args[0] is not ("--help" or "-h" or "-?" or "--version"))
            args = ["demo", .. args];
        return root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
    }

    public static IEnumerable<Command> Commands()
    {
        // In the order a user meets them: the main job, its stages, looking at a model, the math, speed and kernels.
        yield return DemoCommand.Create();
        yield return SftCommand.Create();
        yield return GrpoCommand.Create();
        yield return EvalCommand.Create();
        yield return SampleCommand.Create();
        yield return TokenizeCommand.Create();
        yield return ExplainCommand.Create();
        yield return RewardCommand.Create();
        yield return BenchCommand.Create();
        yield return CheckCommand.Create();
        yield return ExperimentCommand.Create();
    }
}
