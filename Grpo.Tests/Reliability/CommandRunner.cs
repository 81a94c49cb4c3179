// Runs `grpo <command> ...` in-process through Program.Main with stdout, stderr and Spectre.Console's
// output captured, for the tests that check what a user sees. Console redirection is process-wide,
// so those tests share the "Console" collection, which xunit runs alone (DisableParallelization).
// Also: the small tasks and folders the reliability tests train on.
using Grpo.Cli;
using Grpo.Model;
using Grpo.Sampling;
using Grpo.Tasks;
using Spectre.Console;

namespace Grpo.Tests.Reliability;

[CollectionDefinition("Console", DisableParallelization = true)]
public sealed class ConsoleCollection;

public static class CommandRunner
{
    public sealed record Result(int ExitCode, string Out, string Error)
    {
        /// <summary>Stderr as one trimmed line; fails when it holds more than one (a stack trace, say).</summary>
        public string ErrorLine
        {
            get
            {
                var lines = Error.Trim().Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Assert.True(lines.Length == 1, $"expected one line on stderr, got {lines.Length}:\n{Error}");
                return lines[0].Trim();
            }
        }
    }

    public static Result Run(params string[] args) => Capture(() => Program.Main(args));

    public static Result Capture(Func<int> action)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var (oldOut, oldError, oldAnsi) = (Console.Out, Console.Error, AnsiConsole.Console);
        Console.SetOut(stdout);
        Console.SetError(stderr);
        AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(stdout), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        AnsiConsole.Console.Profile.Width = 1000;   // no wrapping: a line of output stays one line
        try
        {
            int code = action();
            return new Result(code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldError);
            AnsiConsole.Console = oldAnsi;
        }
    }

    /// <summary>The arithmetic task's problems with a reward a random model earns half the time (the
    /// completion's length is even), so that GRPO groups differ and every step trains; optionally a
    /// reward that throws on some completions.</summary>
    public sealed class EvenLengthTask(bool throwSometimes = false) : IRlTask
    {
        private readonly ArithmeticTask inner = new(ArithmeticDifficulty.Easy);
        public string Name => "even-length";
        public Problem SampleTraining(Rng rng) => inner.SampleTraining(rng);
        public IReadOnlyList<Problem> HeldOut(int count) => inner.HeldOut(count);
        public string? ExtractAnswer(string completion) => inner.ExtractAnswer(completion);
        public double Reward(Problem problem, string completion)
        {
            if (throwSometimes && completion.Length % 3 == 0) throw new InvalidOperationException("this reward dislikes multiples of three");
            return completion.Length % 2 == 0 ? 1 : 0;
        }
    }

    /// <summary>A fresh Tiny model for the arithmetic alphabet with room for prompt + completion (context 192), saved as a model folder.</summary>
    public static string SaveTinyArithmeticModel(string folder, ulong seed = 3)
    {
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        Checkpoint.SaveModel(folder, new Transformer(TransformerConfig.Tiny with { VocabSize = tokenizer.VocabSize, MaxSeqLen = 192 }, seed));
        return folder;
    }
}
