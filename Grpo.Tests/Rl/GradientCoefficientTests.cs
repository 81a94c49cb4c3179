// Tests of Rl/GradientCoefficient.cs: each method's coefficient by hand, and the paper's claim
// (section 5.2.1) that GRPO's gradient is eq. 5 with GC = A + beta (pi_ref / pi - 1): the unified
// loss and PolicyLoss have the same gradient on-policy (ratio 1, sequence aggregation, k3).
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Rl;
using Grpo.Sampling;

namespace Grpo.Tests.Rl;

public class GradientCoefficientTests
{
    [Fact]
    public void SftIsMaximumLikelihood()
    {
        // GC = 1: loss = -(1/2) * ((-1 - 2) / 2 + (-0.5) / 1) = -(1/2) * (-2) = 1;
        // gradient -1 / (B |o_i|): -1/4 for output 1's two tokens, -1/2 for output 2's one token.
        var mask = new float[] { 1, 1, 1, 0 };
        var logProbs = Tensor.Parameter([-1f, -2f, -0.5f, 0f], 2, 2);
        var coefficients = GradientCoefficient.Coefficients(TrainingMethod.Sft, mask, 2);
        var loss = GradientCoefficient.Loss(logProbs, coefficients, mask);
        Autograd.Backward(loss);
        Assert.Equal(1f, loss.Item(), 6);
        Assert.Equal([-0.25f, -0.25f, -0.5f, 0f], logProbs.Grad!);
    }

    [Fact]
    public void RftWeightsOnlyCorrectOutputs()
    {
        // I(o): output 1 rewarded 1 (correct), output 2 rewarded 0.
        var coefficients = GradientCoefficient.Coefficients(TrainingMethod.OnlineRft, [1, 1, 1, 0], 2, outcomeRewards: [1, 0]);
        Assert.Equal([1f, 1f, 0f, 0f], coefficients);
        Assert.Equal(DataSource.SftModelSamples, GradientCoefficient.SourceOf(TrainingMethod.Rft));
        Assert.Equal(DataSource.PolicySamples, GradientCoefficient.SourceOf(TrainingMethod.OnlineRft));
        Assert.Equal(DataSource.SupervisedData, GradientCoefficient.SourceOf(TrainingMethod.Sft));
    }

    [Fact]
    public void GrpoCoefficientByHand()
    {
        // A = 1, logp -1, ref -1.5, beta 0.04: 1 + 0.04 * (e^-0.5 - 1) = 1 - 0.04 * 0.393469 = 0.984261.
        var coefficients = GradientCoefficient.Coefficients(TrainingMethod.Grpo, [1], 1, advantages: [1], logProbs: [-1], refLogProbs: [-1.5f], beta: 0.04f);
        Assert.Equal(0.984261f, coefficients[0], 6);
        Assert.Contains("advantages are needed", Assert.Throws<ArgumentException>(() =>
            GradientCoefficient.Coefficients(TrainingMethod.Grpo, [1], 1)).Message);
    }

    [Property(MaxTest = 50)]
    public void GrpoOnPolicyGradientIsTheUnifiedGradient(int seed)
    {
        var rng = new Rng((ulong)seed);
        int batch = rng.NextInt(1, 4), tokens = rng.NextInt(1, 4);
        var logProbData = Enumerable.Range(0, batch * tokens).Select(_ => -0.1f - 2 * rng.NextFloat()).ToArray();
        var reference = logProbData.Select(l => l + 0.5f * rng.NextGaussian()).ToArray();
        var advantages = Advantages.PerToken(Enumerable.Range(0, batch).Select(_ => rng.NextGaussian()).ToArray(), tokens);
        var mask = Enumerable.Range(0, batch * tokens).Select(k => k % tokens == 0 || rng.NextInt(2) == 0 ? 1f : 0f).ToArray();
        float beta = 0.04f + rng.NextFloat();

        var policy = Tensor.Parameter((float[])logProbData.Clone(), batch, tokens);
        Autograd.Backward(PolicyLoss.Compute(policy, logProbData, reference, advantages, mask, new PolicyLossOptions { Beta = beta }).Loss);
        var unified = Tensor.Parameter((float[])logProbData.Clone(), batch, tokens);
        var coefficients = GradientCoefficient.Coefficients(TrainingMethod.Grpo, mask, tokens, advantages: advantages,
            logProbs: logProbData, refLogProbs: reference, beta: beta);
        Autograd.Backward(GradientCoefficient.Loss(unified, coefficients, mask));
        for (int k = 0; k < mask.Length; k++)
            Assert.True(Math.Abs(policy.Grad![k] - unified.Grad![k]) < 1e-5, $"token {k}: PolicyLoss {policy.Grad[k]}, unified {unified.Grad[k]}");
    }

    [Property(MaxTest = 20)]
    public void UnifiedLossGradientsMatchFiniteDifferences(int seed)
    {
        var rng = new Random(seed);
        var logProbs = GradCheck.Random(rng, 2, 2, 3);
        var coefficients = Enumerable.Range(0, 6).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
        GradCheck.AssertOk(GradCheck.Check(x => GradientCoefficient.Loss(x[0], coefficients, [1, 1, 0, 1, 1, 1]), [logProbs], seed));
    }
}
