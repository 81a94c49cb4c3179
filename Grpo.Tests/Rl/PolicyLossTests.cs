// Tests of Rl/PolicyLoss.cs: clipping on both sides of 1 +- eps for A > 0 and A < 0, each
// aggregation on outputs of unequal length, the KL term and the statistics by hand; as properties,
// zero gradient for tokens clipped in the direction of their advantage, and gradients against
// finite differences (GradCheck) for every aggregation and KL estimator.
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Rl;
using Grpo.Sampling;

namespace Grpo.Tests.Rl;

public class PolicyLossTests
{
    private static readonly PolicyLossOptions NoKl = new() { Beta = 0, Aggregation = LossAggregation.Token };

    /// <summary>Loss and d loss / d logp of one token with the given log-ratio and advantage.</summary>
    private static (float Loss, float Grad, bool Clipped) OneToken(float logRatio, float advantage, PolicyLossOptions options)
    {
        var logProbs = Tensor.Parameter([-1f + logRatio], 1, 1);
        var result = PolicyLoss.Compute(logProbs, [-1f], null, [advantage], [1f], options);
        Autograd.Backward(result.Loss);
        return (result.Loss.Item(), logProbs.Grad![0], result.Terms.Clipped[0]);
    }

    [Fact]
    public void ClippingOnBothSidesForBothSigns()
    {
        // eps = 0.2; ratio e^0.3 = 1.349859 (above 1.2), e^-0.3 = 0.740818 (below 0.8); loss = -surrogate.
        // A = +1, ratio 1.35: min(1.35, 1.2) = 1.2, clipped: loss -1.2, gradient 0 (already pushed up enough).
        Assert.Equal((-1.2f, 0f, true), Round(OneToken(0.3f, 1, NoKl)));
        // A = +1, ratio 0.74: min(0.740818, 0.8) = 0.740818, unclipped: gradient -ratio * A = -0.740818.
        Assert.Equal((-0.740818f, -0.740818f, false), Round(OneToken(-0.3f, 1, NoKl)));
        // A = -1, ratio 1.35: min(-1.349859, -1.2) = -1.349859, unclipped: loss 1.349859, gradient +1.349859.
        Assert.Equal((1.349859f, 1.349859f, false), Round(OneToken(0.3f, -1, NoKl)));
        // A = -1, ratio 0.74: min(-0.740818, -0.8) = -0.8, clipped: loss 0.8, gradient 0 (already pushed down enough).
        Assert.Equal((0.8f, 0f, true), Round(OneToken(-0.3f, -1, NoKl)));
        // Inside the region, A = 2, ratio e^0.1 = 1.105171: loss -2.210342, gradient -2.210342.
        Assert.Equal((-2.210342f, -2.210342f, false), Round(OneToken(0.1f, 2, NoKl)));
        // Clip-higher (DAPO): ratio e^0.22 = 1.246077 is clipped by eps 0.2 but not by epsHigh 0.28.
        Assert.Equal((-1.2f, 0f, true), Round(OneToken(0.22f, 1, NoKl)));
        Assert.Equal((-1.246077f, -1.246077f, false), Round(OneToken(0.22f, 1, NoKl with { EpsilonHigh = 0.28f })));
    }

    private static (float, float, bool) Round((float Loss, float Grad, bool Clipped) value) =>
        (MathF.Round(value.Loss, 6), MathF.Round(value.Grad, 6), value.Clipped);

    /// <summary>
    /// Two outputs of lengths 3 and 1 padded to T = 3, ratio 1 and beta 0, so each term is -A:
    /// output 1 has A = 1 (terms -1, -1, -1), output 2 has A = -2 (term 2). Padding holds -inf to show it is never read.
    /// </summary>
    private static (float Loss, float[] Grad) Unequal(LossAggregation aggregation)
    {
        float pad = float.NegativeInfinity;
        var logProbs = Tensor.Parameter([-1f, -2f, -0.5f, -0.7f, pad, pad], 2, 3);
        var old = (float[])logProbs.Data.Clone();
        var result = PolicyLoss.Compute(logProbs, old, null, [1, 1, 1, -2, -2, -2], [1, 1, 1, 1, 0, 0],
            new PolicyLossOptions { Beta = 0, Aggregation = aggregation, MaxTokens = 4 });
        Autograd.Backward(result.Loss);
        return (MathF.Round(result.Loss.Item(), 6), logProbs.Grad!.Select(g => MathF.Round(g, 6)).ToArray());
    }

    [Fact]
    public void SequenceAggregationIsMeanOfMeans()
    {
        // (1/2) * ((-1 - 1 - 1) / 3 + 2 / 1) = (1/2) * (-1 + 2) = 0.5;
        // gradients w * (-ratio * A): output 1 w = 1/6 -> -0.166667; output 2 w = 1/2 -> +1; padding 0.
        var (loss, grad) = Unequal(LossAggregation.Sequence);
        Assert.Equal(0.5f, loss);
        Assert.Equal([-0.166667f, -0.166667f, -0.166667f, 1f, 0f, 0f], grad);
    }

    [Fact]
    public void TokenAggregationIsMeanOverAllTokens()
    {
        // (-1 - 1 - 1 + 2) / 4 = -0.25; gradients -1/4 for output 1, 2/4 for output 2.
        var (loss, grad) = Unequal(LossAggregation.Token);
        Assert.Equal(-0.25f, loss);
        Assert.Equal([-0.25f, -0.25f, -0.25f, 0.5f, 0f, 0f], grad);
    }

    [Fact]
    public void ConstantAggregationDividesByTheBudget()
    {
        // (-1 - 1 - 1 + 2) / (B * maxTokens) = -1 / (2 * 4) = -0.125; gradients -1/8 and 2/8.
        var (loss, grad) = Unequal(LossAggregation.Constant);
        Assert.Equal(-0.125f, loss);
        Assert.Equal([-0.125f, -0.125f, -0.125f, 0.25f, 0f, 0f], grad);
    }

    [Fact]
    public void KlPenaltyByHand()
    {
        // ratio 1, A = 0, logp -1, ref -1.5, beta 0.04: loss = 0.04 * k3 = 0.04 * 0.106531 = 0.00426123;
        // gradient = 0.04 * (1 - e^-0.5) = 0.04 * 0.393469 = 0.0157388.
        var logProbs = Tensor.Parameter([-1f], 1, 1);
        var result = PolicyLoss.Compute(logProbs, [-1f], [-1.5f], [0f], [1f], new PolicyLossOptions());
        Autograd.Backward(result.Loss);
        Assert.Equal(0.00426123f, result.Loss.Item(), 7);
        Assert.Equal(0.0157388f, logProbs.Grad![0], 6);
        Assert.Equal(0.106531, result.Statistics.MeanKl, 6);
    }

    [Fact]
    public void StatisticsCountTheActiveClips()
    {
        // Four tokens (log-ratio, A): (0.3, +1) clipped high; (-0.3, +1) not; (0.3, -1) not; (-0.3, -1) clipped low.
        // Mean ratio = (2 * 1.3498588 + 2 * 0.7408182) / 4 = 1.0453385.
        var logProbs = Tensor.Parameter([0.3f, -0.3f, 0.3f, -0.3f], 4, 1);
        var result = PolicyLoss.Compute(logProbs, new float[4], new float[4], [1, 1, -1, -1], [1, 1, 1, 1], new PolicyLossOptions());
        Assert.Equal(0.25, result.Statistics.ClipFractionHigh);
        Assert.Equal(0.25, result.Statistics.ClipFractionLow);
        Assert.Equal(1.0453385, result.Statistics.MeanRatio, tolerance: 1e-6);
        Assert.Equal(4, result.Statistics.Tokens);
        Assert.Equal([true, false, false, true], result.Terms.Clipped);
    }

    [Fact]
    public void BadInputIsNamed()
    {
        var logProbs = Tensor.Parameter([-1f, -2f], 1, 2);
        string Error(Action action) => Assert.Throws<ArgumentException>(action).Message;
        Assert.Contains("oldLogProbs has 1 values", Error(() => PolicyLoss.Compute(logProbs, [-1f], null, [1, 1], [1, 1], NoKl)));
        Assert.Contains("no refLogProbs", Error(() => PolicyLoss.Compute(logProbs, [-1f, -1f], null, [1, 1], [1, 1], new PolicyLossOptions())));
        Assert.Contains("maxTokens >= the longest", Error(() => PolicyLoss.Compute(logProbs, [-1f, -1f], null, [1, 1], [1, 1], NoKl with { Aggregation = LossAggregation.Constant, MaxTokens = 1 })));
        Assert.Contains("mask[1] is 0.5", Error(() => PolicyLoss.Compute(logProbs, [-1f, -1f], null, [1, 1], [1, 0.5f], NoKl)));
        Assert.Contains("must be (B, T)", Error(() => PolicyLoss.Compute(Tensor.Parameter([-1f], 1), [-1f], null, [1], [1], NoKl)));
        Assert.Contains("unknown aggregation 'mean'", Error(() => PolicyLossOptions.ParseAggregation("mean")));
    }

    /// <summary>A random batch: B outputs of random lengths padded to T, log-ratios kept away from the clip's kinks.</summary>
    private sealed record Case(Tensor LogProbs, float[] Old, float[] Ref, float[] Advantages, float[] Mask, PolicyLossOptions Options);

    private static Case RandomCase(int seed, double kinkMargin)
    {
        var rng = new Rng((ulong)seed);
        int batch = rng.NextInt(1, 4), tokens = rng.NextInt(1, 5);
        float epsLow = 0.1f + 0.1f * rng.NextInt(0, 2), epsHigh = epsLow + 0.08f * rng.NextInt(0, 1);
        var options = new PolicyLossOptions
        {
            EpsilonLow = epsLow, EpsilonHigh = epsHigh, Beta = 0.1f * rng.NextInt(0, 2),
            Aggregation = (LossAggregation)rng.NextInt(3), Kl = (KlEstimator)rng.NextInt(3), MaxTokens = tokens + rng.NextInt(0, 2),
        };
        var logProbs = new float[batch * tokens]; var old = new float[batch * tokens]; var reference = new float[batch * tokens];
        var advantages = new float[batch * tokens]; var mask = new float[batch * tokens];
        double[] kinks = [Math.Log(1 - epsLow), Math.Log(1 + epsHigh)];
        for (int b = 0; b < batch; b++)
        {
            int length = rng.NextInt(1, tokens);
            float advantage = rng.NextInt(5) == 0 ? 0 : rng.NextGaussian();
            for (int t = 0; t < tokens; t++)
            {
                int k = b * tokens + t;
                logProbs[k] = -0.1f - 2 * rng.NextFloat();
                float logRatio = 0.6f * rng.NextGaussian();
                while (kinks.Any(kink => Math.Abs(logRatio - kink) < kinkMargin)) logRatio += 2 * (float)kinkMargin;
                old[k] = logProbs[k] - logRatio;
                reference[k] = logProbs[k] + 0.5f * rng.NextGaussian();
                advantages[k] = advantage;
                mask[k] = t < length ? 1 : 0;
            }
        }
        return new Case(Tensor.Parameter(logProbs, batch, tokens), old, reference, advantages, mask, options);
    }

    [Property(MaxTest = 100)]
    public void NoGradientForTokensClippedInTheDirectionOfTheirAdvantage(int seed)
    {
        var c = RandomCase(seed, kinkMargin: 0);
        var options = c.Options with { Beta = 0 };
        var result = PolicyLoss.Compute(c.LogProbs, c.Old, null, c.Advantages, c.Mask, options);
        Autograd.Backward(result.Loss);
        for (int k = 0; k < c.Mask.Length; k++)
        {
            if (c.Mask[k] == 0) { Assert.Equal(0f, c.LogProbs.Grad![k]); continue; }
            double ratio = Math.Exp(c.LogProbs.Data[k] - c.Old[k]);
            bool pushedUpEnough = c.Advantages[k] > 0 && ratio > 1 + options.EpsilonHigh;
            bool pushedDownEnough = c.Advantages[k] < 0 && ratio < 1 - options.EpsilonLow;
            if (pushedUpEnough || pushedDownEnough) Assert.Equal(0f, c.LogProbs.Grad![k]);
            else if (c.Advantages[k] != 0) Assert.NotEqual(0f, c.LogProbs.Grad![k]);
        }
    }

    [Property(MaxTest = 60)]
    public void GradientsMatchFiniteDifferences(int seed)
    {
        // Log-ratios stay 0.05 from the kinks, so the +-h steps (h = 1e-2) never cross one.
        var c = RandomCase(seed, kinkMargin: 0.05);
        GradCheck.AssertOk(GradCheck.Check(x => PolicyLoss.Compute(x[0], c.Old, c.Ref, c.Advantages, c.Mask, c.Options).Loss,
            [c.LogProbs], seed));
    }
}
