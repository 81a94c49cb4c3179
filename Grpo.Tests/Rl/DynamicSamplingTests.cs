// Dynamic sampling (DAPO) keeps exactly the groups that give a gradient, under each method:
// GRPO with outcome rewards drops a group whose rewards are all equal (its advantages are 0);
// GRPO with process rewards keeps it when its step rewards differ; RFT and Online RFT keep a group
// whose outputs are all correct (their coefficient is 1 on every correct output).
using Grpo.Model;
using Grpo.Rl;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Tests;

public class DynamicSamplingTests
{
    /// <summary>Every completion is correct (outcome reward 1); its one step is rewarded +1 when the
    /// completion starts with a lower-case letter, else -1, so step rewards differ within a group.</summary>
    private sealed class AlwaysRightTask : IProcessRewardTask
    {
        public string Name => "always-right";
        public Problem SampleTraining(Rng rng) => new("Say a word:", "0", "a");
        public IReadOnlyList<Problem> HeldOut(int count) => [];
        public string? ExtractAnswer(string completion) => "0";
        public double Reward(Problem problem, string completion) => 1.0;
        public IReadOnlyList<StepReward> StepRewards(Problem problem, string completion) =>
            [new StepReward(completion.Length, completion.Length > 0 && char.IsAsciiLetterLower(completion[0]) ? 1 : -1, StepVerdict.Correct)];
    }

    [Theory]
    [InlineData(TrainingMethod.Grpo, Supervision.Outcome, 0)]
    [InlineData(TrainingMethod.Grpo, Supervision.Process, 4)]
    [InlineData(TrainingMethod.OnlineRft, Supervision.Outcome, 4)]
    [InlineData(TrainingMethod.Rft, Supervision.Outcome, 4)]
    public void GroupsKeptAreThoseThatGiveAGradient(TrainingMethod method, Supervision supervision, int groupsTrained)
    {
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        var model = new Transformer(TransformerConfig.Tiny with { VocabSize = tokenizer.VocabSize }, seed: 3);
        var settings = new GrpoSettings
        {
            Method = method, Supervision = supervision, QuestionsPerStep = 4, GroupSize = 8, MaxNewTokens = 3,
            MaskTruncated = false, LearningRate = 1e-3f, Seed = 5,
        };
        var task = new AlwaysRightTask();
        var metrics = new GrpoTrainer(model, task, tokenizer, settings, Rewards.ForTask(task)).Step();
        // Outcome rewards are all 1: every group has zero reward std.
        Assert.Equal(1.0, metrics.ZeroStdGroupFraction);
        Assert.Equal(groupsTrained, metrics.GroupsTrained);
    }

    private sealed class ConstantTask(double reward) : IRlTask
    {
        public string Name => "constant";
        public Problem SampleTraining(Rng rng) => new("Say a word:", "0", "a");
        public IReadOnlyList<Problem> HeldOut(int count) => [];
        public string? ExtractAnswer(string completion) => null;
        public double Reward(Problem problem, string completion) => reward;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void DynamicSamplingDropsGroupsWhoseRewardsAreAllEqual(bool dynamicSampling)
    {
        // Every output gets reward 1, so every group has std 0: with dynamic sampling nothing is trained
        // on (and the weights do not move); without it every group is kept, with advantages 0.
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        var model = new Transformer(TransformerConfig.Tiny with { VocabSize = tokenizer.VocabSize }, seed: 3);
        var before = model.Parameters.Select(p => (float[])p.Value.Data.Clone()).ToArray();
        var settings = new GrpoSettings { QuestionsPerStep = 3, GroupSize = 4, MaxNewTokens = 2, MaskTruncated = false, DynamicSampling = dynamicSampling };
        var task = new ConstantTask(1);
        var metrics = new GrpoTrainer(model, task, tokenizer, settings, Rewards.ForTask(task)).Step();
        Assert.Equal(1.0, metrics.ZeroStdGroupFraction);
        Assert.Equal(dynamicSampling ? 0 : 3, metrics.GroupsTrained);
        if (dynamicSampling)
            for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], model.Parameters[i].Value.Data);
    }
}
