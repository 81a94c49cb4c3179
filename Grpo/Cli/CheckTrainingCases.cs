// `grpo check`'s cases for the kernels of the training and sampling loop: token log-probs and
// cross-entropy over a 32000-token vocabulary, two AdamW steps, the sampler's rows (greedy tokens,
// temperature and min-p probabilities, the inverse-CDF draw) and the GRPO per-token loss and its
// gradient. Tolerances as in CheckOpCases.cs; tokens must agree exactly.
using Grpo.Compute.Kernels;
using Grpo.Ops;
using Grpo.Optim;
using Grpo.Rl;
using Grpo.Sampling;
using Case = Grpo.Cli.CheckCommand.Case;
using static Grpo.Cli.CheckOpCases;

namespace Grpo.Cli;

internal static class CheckTrainingCases
{
    public static IEnumerable<Case> Cases(Rng rng, bool small, int rows, int vocab)
    {
        var logits = Random(rng, 6f, rows, vocab);
        int[] targets = Enumerable.Range(0, rows).Select(_ => rng.NextInt(vocab)).ToArray();
        var dy = Random(rng, 1f, rows).Data;
        float[] weights = Enumerable.Range(0, rows).Select(i => i % 3 == 0 ? 0f : 1f).ToArray();   // a third masked out
        string shape = $"({rows}, {vocab})";
        foreach (var c in Outputs("logprobs", shape,
            () => WithGrad(t => Op.TokenLogProbs(t, targets), logits, dy),
            d =>
            {
                var (logProbs, dLogits) = TokenLogProbKernels.Host.TokenLogProbs(d, logits.Data, targets, vocab, dy, new float[logits.Size]);
                return [logProbs, dLogits];
            },
            ("forward", 1e-5), ("backward dlogits", 1e-4))) yield return c;
        foreach (var c in Outputs("xentropy", $"{shape} 1/3 weight 0",
            () => WithGrad(t => Op.CrossEntropy(t, targets, weights), logits, [1f]),
            d =>
            {
                var (loss, dLogits) = TokenLogProbKernels.Host.CrossEntropy(d, logits.Data, targets, weights, vocab, 1f, new float[logits.Size]);
                return [[loss], dLogits];
            },
            ("loss", 1e-5), ("backward dlogits", 1e-4))) yield return c;

        foreach (var c in AdamWCases(rng, small)) yield return c;
        foreach (var c in SamplerCases(rng, small ? 4 : 64, vocab)) yield return c;
        foreach (var c in PolicyLossCases(rng, small ? 4 : 64, small ? 12 : 96)) yield return c;
    }

    /// <summary>Two steps of AdamW over a decayed matrix and an undecayed norm weight, on the CPU and through the kernel.</summary>
    private static IEnumerable<Case> AdamWCases(Rng rng, bool small)
    {
        int rows = small ? 48 : 768, cols = small ? 32 : 256;
        var matrix = Random(rng, 0.05f, rows, cols).Data;
        var norm = Random(rng, 1f, cols).Data;
        var grads = Enumerable.Range(0, 2).Select(_ => (Random(rng, 0.01f, rows * cols).Data, Random(rng, 0.01f, cols).Data)).ToArray();
        AdamW Optimizer() => new([("w", Tensor.Parameter((float[])matrix.Clone(), rows, cols)), ("norm", Tensor.Parameter((float[])norm.Clone(), cols))],
            learningRate: 1e-3, weightDecay: 0.1);
        float[][] Run(Action<AdamW> step)
        {
            var optimizer = Optimizer();
            foreach (var (gradMatrix, gradNorm) in grads)
            {
                optimizer.ZeroGrad();
                optimizer.Slots[0].Value.AccumulateGrad(gradMatrix);
                optimizer.Slots[1].Value.AccumulateGrad(gradNorm);
                step(optimizer);
            }
            return [optimizer.Slots[0].Value.Data, optimizer.Slots[0].M.Data, optimizer.Slots[0].V.Data, optimizer.Slots[1].Value.Data];
        }
        return Outputs("adamw", $"({rows}, {cols}) + ({cols}), 2 steps", () => Run(o => o.Step()), d => Run(o => AdamWKernels.Host.Step(d, o)),
            ("matrix after the steps", 1e-6), ("matrix m", 1e-5), ("matrix v", 1e-5), ("norm weight after", 1e-6));
    }

    private static IEnumerable<Case> SamplerCases(Rng rng, int rows, int vocab)
    {
        var logits = Random(rng, 4f, rows, vocab).Data;
        var coins = Enumerable.Range(0, rows).Select(_ => rng.NextFloat()).ToArray();
        var options = new SamplerOptions(Temperature: 0.8f, MinP: 0.02f);
        string shape = $"({rows}, {vocab})";
        foreach (var c in Outputs("sampler", shape,
            () =>
            {
                var greedy = new float[rows];
                var probabilities = new float[rows * vocab];
                var drawn = new float[rows];
                for (int r = 0; r < rows; r++)
                {
                    var row = logits.AsSpan(r * vocab, vocab);
                    greedy[r] = Sampler.ArgMax(row);
                    var rowProbabilities = Sampler.ProbabilitiesAfterFilters(row, options);
                    rowProbabilities.CopyTo(probabilities, r * vocab);
                    drawn[r] = Sampler.Draw(rowProbabilities, coins[r]);
                }
                return [greedy, probabilities, drawn];
            },
            d => [Array.ConvertAll(SamplerKernels.Host.Sample(d, logits, vocab, SamplerOptions.Greedy, coins), t => (float)t),
                  SamplerKernels.Host.ProbabilitiesOf(d, logits, vocab, options.Temperature, options.MinP),
                  Array.ConvertAll(SamplerKernels.Host.Sample(d, logits, vocab, options, coins), t => (float)t)],
            // A coin within rounding (~1e-7) of a step of the CDF could pick a neighbour: about 1e-5 odds for 64 rows.
            ("greedy tokens", 0), ("probabilities (T 0.8, min-p 0.02)", 1e-5), ("drawn tokens (inverse CDF)", 0))) yield return c;

    }

    private static IEnumerable<Case> PolicyLossCases(Rng rng, int batch, int tokens)
    {
        int size = batch * tokens;
        float[] Values(float center, float spread) => Enumerable.Range(0, size).Select(_ => center + spread * (2 * rng.NextFloat() - 1)).ToArray();
        var logProbs = Values(-2f, 1.5f);
        var oldLogProbs = logProbs.Select(l => l + 0.5f * (2 * rng.NextFloat() - 1)).ToArray();   // ratios on both sides of the clip
        var refLogProbs = Values(-2f, 1.5f);
        var advantages = Values(0f, 1.5f);
        var lengths = Enumerable.Range(0, batch).Select(_ => rng.NextInt(1, tokens + 1)).ToArray();
        var mask = Enumerable.Range(0, size).Select(k => k % tokens < lengths[k / tokens] ? 1f : 0f).ToArray();
        var options = new PolicyLossOptions { Beta = 0.04f, EpsilonLow = 0.2f, EpsilonHigh = 0.28f };
        return Outputs("grpo loss", $"({batch}, {tokens}) k3 sequence",
            () =>
            {
                var logp = Tensor.Parameter((float[])logProbs.Clone(), batch, tokens);
                var result = PolicyLoss.Compute(logp, oldLogProbs, refLogProbs, advantages, mask, options);
                Autograd.Backward(result.Loss);
                return [[result.Loss.Item()], logp.Grad!, result.Terms.Ratio, result.Terms.Kl];
            },
            d =>
            {
                var (loss, dLogProbs, ratio, kl) = PolicyLossKernels.Host.Run(d, logProbs, batch, oldLogProbs, refLogProbs, advantages, mask, options);
                return [[loss], dLogProbs, ratio, kl];
            },
            ("loss", 1e-5), ("backward dlogp", 1e-5), ("ratio per token", 1e-6), ("k3 per token", 1e-5));
    }
}
