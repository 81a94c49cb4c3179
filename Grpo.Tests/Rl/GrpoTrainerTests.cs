using Grpo.Model;
using Grpo.Ops;
using Grpo.Rl;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Tests;

public class GrpoTrainerTests
{
    /// <summary>A task whose reward is 1 when the completion starts with a lower-case letter (26 of the
    /// 59 characters, so about 44% of a random model's outputs): GRPO must make that more probable.</summary>
    private sealed class FirstLetterTask : IRlTask
    {
        public string Name => "first-letter";
        public Problem SampleTraining(Rng rng) => new("Say a word:", "0", "a");
        public IReadOnlyList<Problem> HeldOut(int count) => [];
        public string? ExtractAnswer(string completion) => null;
        public double Reward(Problem problem, string completion) => completion.Length > 0 && char.IsAsciiLetterLower(completion[0]) ? 1 : 0;
    }

    private static double RewardedMass(Transformer model, CharTokenizer tokenizer)
    {
        using var _ = Autograd.NoGrad();
        var prompt = tokenizer.Encode("Say a word:", addBos: true);
        var logits = model.Forward(prompt, 1, prompt.Length);
        var probabilities = Op.Softmax(logits).Data.AsSpan((prompt.Length - 1) * tokenizer.VocabSize, tokenizer.VocabSize);
        double mass = 0;
        for (char c = 'a'; c <= 'z'; c++) mass += probabilities[tokenizer.Id(c)];
        return mass;
    }

    [Theory]
    [InlineData(TrainingMethod.Grpo, LossAggregation.Sequence, 1)]
    [InlineData(TrainingMethod.Grpo, LossAggregation.Token, 2)]
    [InlineData(TrainingMethod.OnlineRft, LossAggregation.Token, 1)]
    public void StepsRaiseTheProbabilityOfTheRewardedOutput(TrainingMethod method, LossAggregation aggregation, int mu)
    {
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        var model = new Transformer(TransformerConfig.Tiny with { VocabSize = tokenizer.VocabSize }, seed: 3);
        var settings = new GrpoSettings
        {
            Method = method, Aggregation = aggregation, Mu = mu, QuestionsPerStep = 2, GroupSize = 8,
            MaxNewTokens = 1, MaskTruncated = false, LearningRate = 1e-2f, Seed = 5,
        };
        var task = new FirstLetterTask();
        var trainer = new GrpoTrainer(model, task, tokenizer, settings, Rewards.ForTask(task));
        double before = RewardedMass(model, tokenizer);
        var log = new List<string>();
        for (int step = 0; step < 15; step++) { var m = trainer.Step(); log.Add($"r {m.RewardMean:F2} gn {m.GradNorm:F3} lr {m.LearningRate} kept {m.GroupsTrained} loss {m.Loss:F4}"); }
        double after = RewardedMass(model, tokenizer);
        Assert.True(after > before + 0.1, $"rewarded mass {before:F3} -> {after:F3}; " + string.Join(" | ", log));
    }
}
