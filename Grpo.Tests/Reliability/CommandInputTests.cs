// Every user-facing input of sft, grpo, eval and demo, wrong: each exits 1 with one line on stderr
// whose text is checked here, never a stack trace. Run in-process through Program.Main with the
// output captured (CommandRunner). Also: a resumed finished run exits 0 and says it is done; a
// folder holding a run is not started over without --resume; a throwing reward is reported once.
using System.Text.Json.Nodes;
using Grpo.Cli;
using Grpo.Model;
using Grpo.Rl;
using Grpo.Tasks;

namespace Grpo.Tests.Reliability;

[Collection("Console")]
public sealed class CommandInputTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("grpo-inputs-").FullName;
    private readonly string model;

    public CommandInputTests() => model = CommandRunner.SaveTinyArithmeticModel(Path.Combine(root, "model"));

    public void Dispose() => Directory.Delete(root, recursive: true);

    private string Out => Path.Combine(root, "out");

    private static readonly string[] TinySft = ["sft", "--preset", "tiny", "--context-length", "128", "--steps", "4", "--warmup-steps", "1", "--batch-size", "2"];

    private void Fails(string expected, params string[] args)
    {
        var result = CommandRunner.Run(args);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("error: " + expected, result.ErrorLine);
    }

    private void FailsStartingWith(string expectedStart, params string[] args)
    {
        var result = CommandRunner.Run(args);
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("error: " + expectedStart, result.ErrorLine);
    }

    [Fact]
    public void SftOptionsOutOfRange()
    {
        Fails("--steps must be at least 1 (got 0)", "sft", "--steps", "0", "--out", Out);
        Fails("--batch-size must be at least 1 (got 0)", "sft", "--batch-size", "0", "--out", Out);
        Fails("--warmup-steps must be in [0, --steps) (got 50 with --steps 30)", "sft", "--steps", "30", "--out", Out);
        Fails("--learning-rate must be a finite number >= 0 (got -1)", "sft", "--learning-rate", "-1", "--out", Out);
        Fails("--learning-rate: cannot read 'fast' as single", "sft", "--learning-rate", "fast", "--out", Out);
        Fails("--max-grad-norm must be > 0 (got 0)", "sft", "--max-grad-norm", "0", "--out", Out);
        Fails("--context-length must be >= 0 (got -5)", "sft", "--context-length", "-5", "--out", Out);
        Fails("--difficulty: cannot read 'extreme' as arithmeticdifficulty (one of easy, hard)", "sft", "--difficulty", "extreme", "--out", Out);
        Fails($"unknown preset 'huge' (expected {string.Join(", ", TransformerConfig.Presets.Keys)})", "sft", "--preset", "huge", "--steps", "4", "--warmup-steps", "1", "--out", Out);
        Fails("unknown task 'poetry' (expected arithmetic or gsm8k)", "sft", "--task", "poetry", "--out", Out);
        Fails("--checkpoint-every must be >= 0 (got -1)", [.. TinySft, "--checkpoint-every", "-1", "--out", Out]);
        Fails("--keep-checkpoints must be at least 1 (got 0)", [.. TinySft, "--keep-checkpoints", "0", "--out", Out]);
        Fails("--max-bad-steps must be at least 1 (got 0)", [.. TinySft, "--max-bad-steps", "0", "--out", Out]);
        Fails($"config file not found: {Path.Combine(root, "none.json")}", "sft", "--config", Path.Combine(root, "none.json"), "--out", Out);
    }

    [Fact]
    public void SftBadFilesAndContext()
    {
        // The Tiny preset's context (64) is shorter than the arithmetic problems (up to 120 characters).
        FailsStartingWith("step 1: a problem's prompt and solution take ", "sft", "--preset", "tiny", "--steps", "4", "--warmup-steps", "1", "--out", Out);
        Fails($"{Path.Combine(root, "nowhere")}: model folder not found", [.. TinySft, "--model", Path.Combine(root, "nowhere"), "--out", Out]);

        string badConfig = Path.Combine(root, "bad-config.json");
        File.WriteAllText(badConfig, "{\"steps\": 4,");
        FailsStartingWith($"config file {badConfig}: ", "sft", "--config", badConfig, "--out", Out);

        // --out naming a file, not a folder.
        string file = Path.Combine(root, "a-file");
        File.WriteAllText(file, "x");
        FailsStartingWith("", [.. TinySft, "--out", file]);
    }

    [Fact]
    public void GrpoOptionsOutOfRange()
    {
        string[] grpo = ["grpo", "--model", model, "--out", Out];
        Fails("--group-size must be at least 2 (got 1): advantages compare outputs within a group", [.. grpo, "--group-size", "1"]);
        Fails("--epsilon and --epsilon-high must be > 0 (got 0, 0.2)", [.. grpo, "--epsilon", "0"]);
        Fails("--beta must be >= 0 (got -0.1)", [.. grpo, "--beta", "-0.1"]);
        Fails("--questions-per-step must be at least 1 (got 0)", [.. grpo, "--questions-per-step", "0"]);
        Fails("--mu must be at least 1 (got 0)", [.. grpo, "--mu", "0"]);
        Fails("--steps must be >= 0 (got -3)", [.. grpo, "--steps", "-3"]);
        Fails("--top-p must be in (0, 1] (got 0)", [.. grpo, "--top-p", "0"]);
        Fails("--max-grad-norm must be > 0 (got -1)", [.. grpo, "--max-grad-norm", "-1"]);
        Fails("--warmup-steps must be less than --steps with --cosine (got 5 with --steps 2)", [.. grpo, "--steps", "2", "--cosine", "--warmup-steps", "5"]);
        Fails("--method: cannot read 'ppo' as trainingmethod (one of sft, rft, onlinerft, grpo)", [.. grpo, "--method", "ppo"]);
        Fails("--method sft is the `sft` command (worked solutions, no sampling); this loop takes grpo, online-rft or rft", [.. grpo, "--method", "sft"]);
        Fails("unknown preset 'r1' (expected deepseekmath)", [.. grpo, "--preset", "r1"]);
        Fails("--max-new-tokens 192 leaves no room for a prompt in the model's context of 192", [.. grpo, "--max-new-tokens", "192"]);
    }

    [Fact]
    public void GrpoBadModelFolders()
    {
        string[] grpo = ["grpo", "--out", Out, "--steps", "2"];
        Fails($"{Path.Combine(root, "nowhere")}: model folder not found", [.. grpo, "--model", Path.Combine(root, "nowhere")]);

        string truncated = Path.Combine(root, "truncated");
        CommandRunner.SaveTinyArithmeticModel(truncated);
        string weights = Path.Combine(truncated, Checkpoint.ModelFile);
        File.WriteAllBytes(weights, File.ReadAllBytes(weights)[..1000]);
        FailsStartingWith($"{weights}: ", [.. grpo, "--model", truncated]);

        // The Tiny preset's 32 tokens: fewer than the arithmetic alphabet's.
        string small = Path.Combine(root, "small-vocabulary");
        Checkpoint.SaveModel(small, new Transformer(TransformerConfig.Tiny with { MaxSeqLen = 192 }, 1));
        Fails($"the model's vocabulary (32) is smaller than the tokenizer's ({new CharTokenizer(ArithmeticTask.Alphabet).VocabSize})", [.. grpo, "--model", small]);

        // A prompt longer than the context: Tiny's own 64 tokens, with 48 new ones.
        string shortContext = Path.Combine(root, "short-context");
        Checkpoint.SaveModel(shortContext, new Transformer(TransformerConfig.Tiny with { VocabSize = new CharTokenizer(ArithmeticTask.Alphabet).VocabSize, MaxSeqLen = 60 }, 1));
        FailsStartingWith("prompt ", [.. grpo, "--model", shortContext, "--max-new-tokens", "20"]);
    }

    [Fact]
    public void EvalAndDemoOptions()
    {
        Fails("--samples must be at least 1 (got 0)", "eval", "--model", model, "--samples", "0");
        Fails("--problems must be at least 1 (got 0)", "eval", "--model", model, "--problems", "0");
        Fails("--max-new-tokens must be at least 1 (got 0)", "eval", "--model", model, "--max-new-tokens", "0");
        Fails($"{Path.Combine(root, "nowhere")}: model folder not found", "eval", "--model", Path.Combine(root, "nowhere"));
        FailsStartingWith("prompt ", "eval", "--model", model, "--max-new-tokens", "180", "--problems", "2", "--samples", "1");
        Fails("--eval-samples and --eval-problems must be at least 1", "demo", "--eval-samples", "0");
        Fails("--group-size must be at least 2 (got 0): advantages compare outputs within a group", "demo", "--group-size", "0");
        Fails("--sft-steps must be at least 1 (got 0)", "demo", "--from-scratch", "--sft-steps", "0");
    }

    [Fact]
    public void GsmDataNeedsAByteLevelModel()
    {
        // --data is read only for --task gsm8k, which the character models of sft/grpo/eval refuse in one line.
        var result = CommandRunner.Run("eval", "--model", model, "--task", "gsm8k", "--data", Path.Combine(root, "missing.jsonl"));
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("error: ", result.ErrorLine);
    }

    [Fact]
    public void ResumeFinishedRunSaysDoneAndAFolderWithARunIsNotStartedOver()
    {
        Assert.Equal(0, CommandRunner.Run([.. TinySft, "--out", Out]).ExitCode);
        var again = CommandRunner.Run([.. TinySft, "--out", Out, "--resume"]);
        Assert.Equal(0, again.ExitCode);
        Assert.Contains($"SFT: the run in {Out} is already done (4 of 4 steps); final model in {Out}", again.Out.ReplaceLineEndings(" "));
        Fails($"{Out} already holds a run (checkpoint of step 4): pass --resume to continue it, or choose another --out", [.. TinySft, "--out", Out]);

        string grpoOut = Path.Combine(root, "grpo");
        string[] grpo = ["grpo", "--model", model, "--out", grpoOut, "--steps", "2", "--group-size", "2", "--questions-per-step", "1", "--max-new-tokens", "8"];
        var fresh = CommandRunner.Run([.. grpo, "--resume"]);
        Assert.Equal(0, fresh.ExitCode);
        Assert.Contains($"no checkpoint in {Path.Combine(grpoOut, "checkpoints")} to resume from: starting fresh", fresh.Out.ReplaceLineEndings(" "));
        var done = CommandRunner.Run([.. grpo, "--resume"]);
        Assert.Equal(0, done.ExitCode);
        Assert.Contains("GRPO: the run in", done.Out);
        Assert.Contains("is already done (2 of 2 steps)", done.Out.ReplaceLineEndings(" "));
        Assert.Equal(2, File.ReadAllLines(Path.Combine(grpoOut, TrainingRun.MetricsFile)).Length);
    }

    [Fact]
    public void AThrowingRewardGivesZeroAndIsReportedOnce()
    {
        var policy = Checkpoint.LoadModel(model);
        var settings = new GrpoSettings { Steps = 3, QuestionsPerStep = 2, GroupSize = 4, MaxNewTokens = 12 };
        List<GrpoStepMetrics>? metrics = null;
        var result = CommandRunner.Capture(() =>
        {
            metrics = GrpoCommand.Train(policy, new CommandRunner.EvenLengthTask(throwSometimes: true), new CharTokenizer(ArithmeticTask.Alphabet),
                settings, new RunOptions(Out));
            return 0;
        });
        int errors = metrics!.Sum(m => m.RewardErrors);
        Assert.True(errors > 0, "the test needs a completion whose length is a multiple of three");
        var lines = result.Out.ReplaceLineEndings("\n").Split('\n').Where(l => l.Contains("reward errors")).ToArray();
        var line = Assert.Single(lines);
        Assert.Contains($"{errors} reward errors (those completions got reward 0); first: reward 'correct' threw InvalidOperationException: this reward dislikes multiples of three", line);
        Assert.Empty(result.Error);
    }
}
