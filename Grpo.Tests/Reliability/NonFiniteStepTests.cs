// A step whose loss or gradient is not finite is skipped without touching a weight or an AdamW
// moment (SftTrainer and GrpoTrainer), and a run with several in a row stops with one line, exit 1,
// and its last good checkpoint intact and finite; NaN never reaches a checkpoint.
using Grpo.Cli;
using Grpo.Model;
using Grpo.Optim;
using Grpo.Rl;
using Grpo.Tasks;

namespace Grpo.Tests.Reliability;

[Collection("Console")]
public sealed class NonFiniteStepTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("grpo-nonfinite-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private static (float[][] Weights, float[][] M, float[][] V, int Step) Snapshot(Transformer model, AdamW optimizer) =>
        (model.Parameters.Select(p => (float[])p.Value.Data.Clone()).ToArray(),
         optimizer.Slots.Select(s => (float[])s.M.Data.Clone()).ToArray(),
         optimizer.Slots.Select(s => (float[])s.V.Data.Clone()).ToArray(), optimizer.StepCount);

    private static void AssertUnchanged((float[][] Weights, float[][] M, float[][] V, int Step) before, Transformer model, AdamW optimizer)
    {
        var after = Snapshot(model, optimizer);
        Assert.Equal(before.Step, after.Step);
        for (int i = 0; i < before.Weights.Length; i++)
        {
            // NaN == NaN for SequenceEqual of floats (Equals, not ==), so the poisoned weight compares too.
            Assert.True(before.Weights[i].SequenceEqual(after.Weights[i]), $"weight {model.Parameters[i].Name} changed");
            Assert.True(before.M[i].SequenceEqual(after.M[i]) && before.V[i].SequenceEqual(after.V[i]), $"AdamW moments of {model.Parameters[i].Name} changed");
        }
    }

    [Fact]
    public void SftTrainerSkipsANaNLossWithoutTouchingWeightsOrMoments()
    {
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        var model = new Transformer(TransformerConfig.Tiny with { VocabSize = tokenizer.VocabSize, MaxSeqLen = 128 }, 1);
        var optimizer = new AdamW(model.Parameters, 1e-2);
        var trainer = new SftTrainer(model, optimizer, LrSchedule.Constant(1e-2f), CharTokenizer.Pad);
        int[][] prompts = [tokenizer.Encode("2 + 3 =", addBos: true)], completions = [tokenizer.Encode(" 5", addEos: true)];
        Assert.False(trainer.Step(prompts, completions).Skipped);   // moments are non-zero from here on

        model.Parameters[0].Value.Data[prompts[0][1] * model.Config.Dim] = float.NaN;   // the embedding of a prompt token
        var before = Snapshot(model, optimizer);
        var result = trainer.Step(prompts, completions);
        Assert.True(result.Skipped);
        Assert.True(float.IsNaN(result.Loss));
        AssertUnchanged(before, model, optimizer);
    }

    [Fact]
    public void GrpoTrainerSkipsANonFiniteLossWithoutTouchingWeightsOrMoments()
    {
        // A KL reference with NaN embeddings: sampling (from the policy) is fine, the loss is NaN.
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        var model = new Transformer(TransformerConfig.Tiny with { VocabSize = tokenizer.VocabSize, MaxSeqLen = 192 }, 1);
        var settings = new GrpoSettings { Steps = 2, QuestionsPerStep = 2, GroupSize = 4, MaxNewTokens = 16, Mu = 2, Beta = 0.04f };
        var task = new CommandRunner.EvenLengthTask();
        var trainer = new GrpoTrainer(model, task, tokenizer, settings, Rewards.ForTask(task));
        Array.Fill(trainer.Reference!.Parameters[0].Value.Data, float.NaN);
        var before = Snapshot(model, trainer.Optimizer);
        var metrics = trainer.Step();
        Assert.True(metrics.GroupsTrained > 0);
        Assert.True(metrics.Skipped);
        AssertUnchanged(before, model, trainer.Optimizer);
    }

    [Fact]
    public void ARewardSumThatOverflowsIsZeroAndCounted()
    {
        // 1e300 * 1 is finite as a double, +infinity as a float: that completion gets 0 and the error is counted.
        var rewards = new Rewards([new RewardFunction("huge", 1e300, (_, completion) => completion.Length % 2)]);
        var problem = new Problem("q", "1", "s");
        var (total, _) = rewards.Score([problem, problem], ["ab", "abc"]);
        Assert.Equal([0f, 0f], total);
        Assert.Equal(1, rewards.Errors);
        Assert.Equal("the weighted sum of rewards (1E+300) is not a finite float", rewards.FirstError);
    }

    [Fact]
    public void SftStopsAfterFiveBadStepsInARowWithItsLastGoodCheckpoint()
    {
        // lr 1e30: the first step is finite and moves the weights by about 1e30; from then on the
        // forward pass overflows and every gradient is NaN: steps 2..6 are skipped, and the run stops.
        string outDir = Path.Combine(root, "sft");
        var result = CommandRunner.Run("sft", "--preset", "tiny", "--context-length", "128", "--learning-rate", "1e30", "--min-learning-rate", "0",
            "--warmup-steps", "0", "--steps", "20", "--batch-size", "4", "--out", outDir, "--checkpoint-every", "1");
        Assert.Equal(1, result.ExitCode);
        Assert.Equal($"error: stopped at step 6: 5 steps in a row had a non-finite loss or gradient (each skipped, weights untouched); the last good checkpoint is {CheckpointStore.FolderFor(outDir, 5)}; try a lower --learning-rate or --max-grad-norm",
            result.ErrorLine);
        var lines = File.ReadAllLines(Path.Combine(outDir, TrainingRun.MetricsFile));
        Assert.Equal(6, lines.Length);
        Assert.Equal(5, lines.Count(l => l.Contains("\"skipped\":true")));

        var newest = CheckpointStore.Newest(outDir);
        Assert.Equal(5, newest.Step);
        var model = Checkpoint.LoadModel(newest.Path!);
        Assert.All(model.Parameters, p => Assert.All(p.Value.Data, x => Assert.True(float.IsFinite(x))));
    }

    [Fact]
    public void ANaNWeightIsNeverSavedTheRunStopsInstead()
    {
        // lr 1e38 overflows the first AdamW update itself (a finite step that leaves NaN weights).
        string outDir = Path.Combine(root, "nan");
        var result = CommandRunner.Run("sft", "--preset", "tiny", "--context-length", "128", "--learning-rate", "1e38", "--min-learning-rate", "0",
            "--warmup-steps", "0", "--steps", "20", "--batch-size", "4", "--out", outDir, "--checkpoint-every", "1");
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("error: stopped at step 1: weight 'model.embed_tokens.weight' holds NaN at index 0, so it was not saved; no checkpoint was saved;", result.ErrorLine);
        Assert.Null(CheckpointStore.Newest(outDir).Path);
        Assert.False(File.Exists(Path.Combine(outDir, Checkpoint.ModelFile)));
    }
}
