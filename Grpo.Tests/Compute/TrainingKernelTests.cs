// The kernels of the training and sampling loop against their CPU references, on ILGPU's CPU
// accelerator: the AdamW update (Optim/AdamW.cs), the sampler's row operations (Sampling/Sampler.cs:
// greedy, temperature, min-p, the inverse-CDF draw) and the GRPO per-token loss and its gradient
// (Rl/PolicyLoss.cs), under every KL estimator and aggregation.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Optim;
using Grpo.Rl;
using Grpo.Sampling;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class TrainingKernelTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Fact]
    public void AdamWStepsMatchTheCpu()
    {
        // Two optimizers over equal parameters (a matrix, decayed; a norm weight, not; one with no gradient, skipped),
        // three steps each with the same gradients: one on the CPU, one through the kernel.
        var rng = new Random(2);
        (string, Tensor)[] Parameters() => [
            ("w", Tensor.Parameter(GradCheck.Random(new Random(1), 1f, 3, 4).Data, 3, 4)),
            ("norm", Tensor.Parameter(GradCheck.Random(new Random(2), 1f, 4).Data, 4)),
            ("unused", Tensor.Parameter(GradCheck.Random(new Random(3), 1f, 2).Data, 2))];
        var cpu = new AdamW(Parameters(), learningRate: 1e-2, weightDecay: 0.1);
        var onDevice = new AdamW(Parameters(), learningRate: 1e-2, weightDecay: 0.1);
        for (int step = 0; step < 3; step++)
        {
            for (int p = 0; p < 2; p++)
            {
                var grad = GradCheck.Random(rng, 1f, cpu.Slots[p].Value.Size).Data;
                cpu.Slots[p].Value.ZeroGrad(); cpu.Slots[p].Value.AccumulateGrad(grad);
                onDevice.Slots[p].Value.ZeroGrad(); onDevice.Slots[p].Value.AccumulateGrad(grad);
            }
            cpu.Step();
            AdamWKernels.Host.Step(device, onDevice);
        }
        Assert.Equal(cpu.StepCount, onDevice.StepCount);
        for (int p = 0; p < 3; p++)
        {
            AssertClose(cpu.Slots[p].Value.Data, onDevice.Slots[p].Value.Data, 1e-6f);
            AssertClose(cpu.Slots[p].M.Data, onDevice.Slots[p].M.Data, 1e-6f);
            AssertClose(cpu.Slots[p].V.Data, onDevice.Slots[p].V.Data, 1e-6f);
        }
        Assert.Equal(GradCheck.Random(new Random(3), 1f, 2).Data, onDevice.Slots[2].Value.Data);   // no gradient: untouched
    }

    [Fact]
    public void GreedyIsTheFirstArgMax()
    {
        // rows: [1, 3, 3, 0] -> 1 (ties to the lowest index); 200 columns with the max at 150 -> 150; all -inf -> 0
        var wide = new float[200];
        wide[150] = 5f;
        float inf = float.NegativeInfinity;
        var tokens = SamplerKernels.Host.Sample(device, [1, 3, 3, 0], 4, SamplerOptions.Greedy, [0f]);
        Assert.Equal([1], tokens);
        Assert.Equal([150], SamplerKernels.Host.Sample(device, wide, 200, SamplerOptions.Greedy, [0f]));
        Assert.Equal([0], SamplerKernels.Host.Sample(device, [inf, inf, inf], 3, SamplerOptions.Greedy, [0f]));
    }

    [Theory]
    [InlineData(1f, 0f)]
    [InlineData(0.7f, 0f)]
    [InlineData(1.3f, 0.05f)]
    public void SamplingMatchesTheCpuSampler(float temperature, float minP)
    {
        var rng = new Random((int)(temperature * 10 + minP * 100));
        int rows = 3, vocab = 150;
        var logits = GradCheck.Random(rng, 4f, rows, vocab).Data;
        var options = new SamplerOptions(Temperature: temperature, MinP: minP);
        var probabilities = SamplerKernels.Host.ProbabilitiesOf(device, logits, vocab, temperature, minP);
        var coins = new float[rows];
        var expectedTokens = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            var row = logits.AsSpan(r * vocab, vocab);
            var expected = Sampler.ProbabilitiesAfterFilters(row, options);
            AssertClose(expected, probabilities[(r * vocab)..((r + 1) * vocab)], 1e-5f);
            coins[r] = (float)rng.NextDouble();
            // The CPU draw over the device's probabilities: the device's draw must pick the same token.
            expectedTokens[r] = Sampler.Draw(probabilities.AsSpan(r * vocab, vocab), coins[r]);
        }
        Assert.Equal(expectedTokens, SamplerKernels.Host.Sample(device, logits, vocab, options, coins));
    }

    [Fact]
    public void TheWarpDrawPicksTheCpusTokenAtEveryCoin()
    {
        // Rows of 70 (two whole chunks of 32 and a partial one) with zeros (min-p's cut) among them;
        // coins spread over [0, 1), plus the cumulative sums themselves (the boundaries: coin == sum
        // is not < sum, so the draw moves on) and 1 - 2^-24 (past every sum when they round below 1).
        var rng = new Random(7);
        int vocab = 70;
        var row = new float[vocab];
        for (int i = 0; i < vocab; i++) row[i] = i % 5 == 0 ? 0f : (float)rng.NextDouble();
        float total = row.Sum();
        for (int i = 0; i < vocab; i++) row[i] /= total;
        var coins = new List<float> { 0f, 1f - 1f / (1 << 24) };
        for (int i = 0; i < 40; i++) coins.Add((float)rng.NextDouble());
        float cumulative = 0f;
        for (int i = 0; i < vocab; i++) { cumulative += row[i]; if (i % 7 == 3) coins.Add(cumulative); }
        int rows = coins.Count;
        var probabilities = Enumerable.Repeat(row, rows).SelectMany(r => r).ToArray();
        var expected = coins.Select(coin => Sampler.Draw(row, coin)).ToArray();

        using var probabilityBuffer = device.UploadToPool<float>(probabilities);
        using var coinBuffer = device.UploadToPool<float>(coins.ToArray());
        using var tokenBuffer = device.Pool.Rent<int>(rows);
        var v2 = new int[rows];
        SamplerKernels.Draw(device, probabilityBuffer.View, coinBuffer.View, tokenBuffer.View, rows, vocab);
        tokenBuffer.Download(v2);
        var v1 = new int[rows];
        SamplerKernels.DrawV1(device, probabilityBuffer.View, coinBuffer.View, tokenBuffer.View, rows, vocab);
        tokenBuffer.Download(v1);
        Assert.Equal(expected, v2);
        Assert.Equal(expected, v1);
    }

    [Fact]
    public void TopKAndTopPSayTheyAreNotPorted()
    {
        Assert.Throws<NotSupportedException>(() => SamplerKernels.Host.Sample(device, [1, 2, 3], 3, new SamplerOptions(TopK: 2), [0.5f]));
        Assert.Throws<NotSupportedException>(() => SamplerKernels.Host.Sample(device, [1, 2, 3], 3, new SamplerOptions(TopP: 0.9f), [0.5f]));
    }

    [Fact]
    public void PolicyLossByHand()
    {
        // One token, logp = oldLogp (ratio 1), A = 2, no reference (beta 0), sequence weight 1/(1*1) = 1:
        // surrogate = min(1 * 2, clip(1) * 2) = 2, loss = -2; d loss / d logp = -ratio * A = -2
        var options = new PolicyLossOptions { Beta = 0f };
        var (loss, dLogProbs, ratio, _) = PolicyLossKernels.Host.Run(device, [-1f], 1, [-1f], null, [2f], [1f], options);
        Assert.Equal(-2f, loss, 6);
        Assert.Equal([-2f], dLogProbs);
        Assert.Equal([1f], ratio);
    }

    [Theory]
    [InlineData(LossAggregation.Sequence, KlEstimator.K3, true)]
    [InlineData(LossAggregation.Token, KlEstimator.K1, true)]
    [InlineData(LossAggregation.Constant, KlEstimator.K2, true)]
    [InlineData(LossAggregation.Sequence, KlEstimator.K3, false)]
    public void PolicyLossMatchesTheCpu(LossAggregation aggregation, KlEstimator kl, bool withReference)
    {
        var rng = new Random((int)aggregation * 10 + (int)kl);
        int batch = 4, tokens = 6, size = batch * tokens;
        float[] Values(float center, float spread) => Enumerable.Range(0, size).Select(_ => center + spread * (2 * (float)rng.NextDouble() - 1)).ToArray();
        var logProbs = Values(-1.5f, 1f);
        var oldLogProbs = logProbs.Select(l => l + 0.4f * (2 * (float)rng.NextDouble() - 1)).ToArray();   // ratios on both sides of the clip
        var refLogProbs = withReference ? Values(-1.5f, 1f) : null;
        var advantages = Values(0f, 1.5f);
        var mask = Enumerable.Range(0, size).Select(k => k % tokens < tokens - k / tokens ? 1f : 0f).ToArray();   // lengths 6, 5, 4, 3
        var options = new PolicyLossOptions
        {
            Aggregation = aggregation, Kl = kl, Beta = withReference ? 0.04f : 0f, EpsilonLow = 0.2f, EpsilonHigh = 0.28f, MaxTokens = tokens,
        };
        var logProbTensor = Tensor.Parameter((float[])logProbs.Clone(), batch, tokens);
        var cpu = PolicyLoss.Compute(logProbTensor, oldLogProbs, refLogProbs, advantages, mask, options);
        Autograd.Backward(cpu.Loss);

        var (loss, dLogProbs, ratio, klValues) = PolicyLossKernels.Host.Run(device, logProbs, batch, oldLogProbs, refLogProbs, advantages, mask, options);
        AssertClose([cpu.Loss.Item()], [loss], 1e-6f);
        AssertClose(logProbTensor.Grad!, dLogProbs, 1e-6f);
        AssertClose(cpu.Terms.Ratio, ratio, 1e-6f);
        AssertClose(cpu.Terms.Kl, klValues, 1e-6f);
    }
}
