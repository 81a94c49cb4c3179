// Tests of Rl/Advantages.cs: the paper's worked example and other hand-computed groups, process
// supervision by hand, the errors, and the laws of group normalisation as FsCheck properties.
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Rl;
using Grpo.Sampling;

namespace Grpo.Tests.Rl;

public class AdvantagesTests
{
    [Fact]
    public void PaperExample()
    {
        // rewards [0, 1, 0, 1]: mean 0.5, population std sqrt(4 * 0.25 / 4) = 0.5 -> (r - 0.5) / 0.5 = [-1, 1, -1, 1].
        var result = Advantages.OutcomeWithSteps([0, 1, 0, 1], groupSize: 4);
        Assert.Equal([-1f, 1f, -1f, 1f], result.Advantages);
        Assert.Equal(0.5, result.GroupMeans[0], 12);
        Assert.Equal(0.5, result.GroupStds[0], 12);
    }

    [Fact]
    public void SampleStd()
    {
        // sample std of [0, 1, 0, 1] = sqrt(1 / 3) = 0.577350 -> A = +-0.5 / 0.577350 = +-0.866025.
        var advantages = Advantages.Outcome([0, 1, 0, 1], 4, new AdvantageOptions(Std: StdKind.Sample));
        Assert.Equal([-0.866025f, 0.866025f, -0.866025f, 0.866025f], advantages.Select(a => MathF.Round(a, 6)));
    }

    [Fact]
    public void BatchScaleKeepsGroupMeans()
    {
        // groups [0, 1] (mean 0.5) and [2, 2] (mean 2); the batch [0, 1, 2, 2] has mean 1.25 and
        // population std sqrt((1.5625 + 0.0625 + 0.5625 + 0.5625) / 4) = sqrt(0.6875) = 0.829156
        // -> [-0.5, 0.5, 0, 0] / 0.829156 = [-0.603023, 0.603023, 0, 0].
        var advantages = Advantages.Outcome([0, 1, 2, 2], 2, new AdvantageOptions(Scale: AdvantageScale.Batch));
        Assert.Equal([-0.603023f, 0.603023f, 0f, 0f], advantages.Select(a => MathF.Round(a, 6)));
    }

    [Fact]
    public void NoScaleIsDrGrpo()
    {
        // [1, 2, 3] - 2 = [-1, 0, 1]; [0, 0, 6] - 2 = [-2, -2, 4].
        var advantages = Advantages.Outcome([1, 2, 3, 0, 0, 6], 3, new AdvantageOptions(Scale: AdvantageScale.None));
        Assert.Equal([-1f, 0f, 1f, -2f, -2f, 4f], advantages);
    }

    [Fact]
    public void EpsIsAddedToStd()
    {
        // [0, 1]: std 0.5, + eps 0.5 = 1 -> [-0.5, 0.5].
        Assert.Equal([-0.5f, 0.5f], Advantages.Outcome([0, 1], 2, new AdvantageOptions(Eps: 0.5)));
    }

    [Fact]
    public void ProcessSupervisionByHand()
    {
        // Output 1 (4 tokens): steps end at tokens 0, 2, 3 with rewards 1, 0, 0.5.
        // Output 2 (4 tokens): one step ending at token 2 with reward 0.
        // R = [1, 0, 0.5, 0]: mean 0.375, population std sqrt((0.390625 + 0.140625 + 0.015625 + 0.140625) / 4)
        //   = sqrt(0.171875) = 0.414578 -> normalised [1.507557, -0.904534, 0.301511, -0.904534].
        // Token t sums the steps that end at or after t:
        //   output 1: t0 = 1.507557 - 0.904534 + 0.301511 = 0.904534; t1 = t2 = -0.904534 + 0.301511 = -0.603023; t3 = 0.301511
        //   output 2: t0 = t1 = t2 = -0.904534; t3 (after the last step) = 0.
        var tokenAdvantages = Advantages.Process([[1f, 0f, 0.5f], [0f]], [[0, 2, 3], [2]], [4, 4], groupSize: 2);
        Assert.Equal([0.904534f, -0.603023f, -0.603023f, 0.301511f], tokenAdvantages[0].Select(a => MathF.Round(a, 6)));
        Assert.Equal([-0.904534f, -0.904534f, -0.904534f, 0f], tokenAdvantages[1].Select(a => MathF.Round(a, 6)));
        // Padded to T = 5 for PolicyLoss: each output's tokens, then a zero.
        Assert.Equal([0.904534f, -0.603023f, -0.603023f, 0.301511f, 0f, -0.904534f, -0.904534f, -0.904534f, 0f, 0f],
            Advantages.PerToken(tokenAdvantages, 5).Select(a => MathF.Round(a, 6)));
    }

    [Fact]
    public void OneStepAtTheEndIsOutcomeSupervision()
    {
        // With a single step ending at each output's last token, process supervision gives every token
        // the outcome advantage: R = [0, 1, 0, 1] -> [-1, 1, -1, 1].
        var tokenAdvantages = Advantages.Process([[0f], [1f], [0f], [1f]], [[2], [0], [1], [3]], [3, 1, 2, 4], groupSize: 4);
        Assert.Equal([-1f, -1f, -1f], tokenAdvantages[0]);
        Assert.Equal([1f], tokenAdvantages[1]);
        Assert.Equal([1f, 1f, 1f, 1f], tokenAdvantages[3]);
    }

    [Fact]
    public void PerTokenSpreadsEachOutputsAdvantage()
    {
        Assert.Equal([-1f, -1f, -1f, 1f, 1f, 1f], Advantages.PerToken([-1f, 1f], 3));
    }

    [Theory]
    [InlineData(new float[] { 0, 1, 0 }, 2, "do not split into whole groups of 2")]
    [InlineData(new float[] { 0, 1 }, 1, "group size must be at least 2")]
    [InlineData(new float[] { 0, float.NaN }, 2, "reward 1 is NaN, not a finite number")]
    [InlineData(new float[] { 0, float.PositiveInfinity }, 2, "not a finite number")]
    [InlineData(new float[0], 2, "no rewards")]
    public void BadRewardsAreNamed(float[] rewards, int groupSize, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => Advantages.Outcome(rewards, groupSize));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void BadProcessInputIsNamed()
    {
        Assert.Contains("step ends must increase", Assert.Throws<ArgumentException>(() =>
            Advantages.Process([[1f, 0f], [0f]], [[2, 1], [0]], [3, 3], 2)).Message);
        Assert.Contains("outside its 3 tokens", Assert.Throws<ArgumentException>(() =>
            Advantages.Process([[1f], [0f]], [[3], [0]], [3, 3], 2)).Message);
        Assert.Contains("2 step rewards but 1 step ends", Assert.Throws<ArgumentException>(() =>
            Advantages.Process([[1f, 0f], [0f]], [[1], [0]], [3, 3], 2)).Message);
        Assert.Contains("eps must be", Assert.Throws<ArgumentException>(() =>
            Advantages.Outcome([0, 1], 2, new AdvantageOptions(Eps: -1))).Message);
    }

    /// <summary>Random rewards: some groups binary (as rule rewards are, often constant), some continuous.</summary>
    private static float[] RandomRewards(Rng rng, int count)
    {
        bool binary = rng.NextInt(2) == 0;
        var rewards = new float[count];
        for (int i = 0; i < count; i++) rewards[i] = binary ? rng.NextInt(2) : rng.NextGaussian() * 3;
        return rewards;
    }

    [Property(MaxTest = 100)]
    public void NonConstantGroupsHaveMeanZeroAndStdOne(int seed, bool sampleStd)
    {
        var rng = new Rng((ulong)seed);
        int groupSize = rng.NextInt(2, 8), groups = rng.NextInt(1, 3);
        var rewards = RandomRewards(rng, groupSize * groups);
        var kind = sampleStd ? StdKind.Sample : StdKind.Population;
        var advantages = Advantages.Outcome(rewards, groupSize, new AdvantageOptions(Std: kind));
        for (int g = 0; g < groups; g++)
        {
            var group = advantages.AsSpan(g * groupSize, groupSize);
            if (rewards.Skip(g * groupSize).Take(groupSize).Distinct().Count() == 1) continue;
            var (mean, std) = Advantages.MeanAndStd(group, kind);
            Assert.True(Math.Abs(mean) < 1e-5, $"group {g}: mean {mean}");
            Assert.True(Math.Abs(std - 1) < 1e-5, $"group {g}: std {std}");
        }
    }

    [Property(MaxTest = 100)]
    public void InvariantUnderPositiveAffineMaps(int seed)
    {
        // A(a r + b) = A(r) for a > 0: the mean absorbs b, the std scales by a.
        var rng = new Rng((ulong)seed);
        int groupSize = rng.NextInt(2, 6), groups = rng.NextInt(1, 3);
        // Rewards on a grid of 0.25 keep the distinct values distinct after the map in float32.
        var rewards = Enumerable.Range(0, groupSize * groups).Select(_ => rng.NextInt(-8, 8) * 0.25f).ToArray();
        float scale = 0.1f + rng.NextFloat() * 10, shift = (rng.NextFloat() - 0.5f) * 20;
        var mapped = rewards.Select(r => scale * r + shift).ToArray();
        foreach (var options in new[] { new AdvantageOptions(), new AdvantageOptions(Std: StdKind.Sample), new AdvantageOptions(Scale: AdvantageScale.Batch) })
        {
            var before = Advantages.Outcome(rewards, groupSize, options);
            var after = Advantages.Outcome(mapped, groupSize, options);
            for (int i = 0; i < before.Length; i++)
                Assert.True(Math.Abs(before[i] - after[i]) < 1e-4, $"{options}: output {i}: {before[i]} became {after[i]}");
        }
    }

    [Property(MaxTest = 100)]
    public bool ConstantGroupGivesZeros(float reward, int seed)
    {
        // Any value, even one whose mean rounds away from it (0.1 * 3 / 3 != 0.1 in float64), and any options.
        if (!float.IsFinite(reward)) reward = 0.1f;
        var rng = new Rng((ulong)seed);
        int groupSize = rng.NextInt(2, 9);
        var options = new AdvantageOptions((AdvantageScale)rng.NextInt(3), (StdKind)rng.NextInt(2), rng.NextInt(2) * 1e-4);
        return Advantages.Outcome(Enumerable.Repeat(reward, groupSize).ToArray(), groupSize, options).All(a => a == 0);
    }
}
