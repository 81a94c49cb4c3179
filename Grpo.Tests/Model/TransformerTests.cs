// The transformer's own laws: the KV-cache forward equals the full forward position by position
// (also for left-padded rows), padding never leaks into real positions, a few AdamW steps lower the
// loss, and the parameter list has Hugging Face names and shapes. Against PyTorch: PyTorchFixtureTests.
using Grpo.Model;
using Grpo.Ops;
using Grpo.Optim;
using Grpo.Sampling;

namespace Grpo.Tests.Model;

public class TransformerTests
{
    private static readonly TransformerConfig Tiny = TransformerConfig.Tiny;

    /// <summary>Tiny with larger weights, so that attention is far from uniform and every path matters.</summary>
    private static Transformer Model(TransformerConfig config, ulong seed = 7)
    {
        var model = new Transformer(config, seed);
        var rng = new Rng(seed + 1);
        foreach (var (_, p) in model.Parameters)
            if (p.Rank >= 2)
                for (int i = 0; i < p.Size; i++) p.Data[i] = 0.3f * rng.NextGaussian();
        return model;
    }

    private static int[] RandomTokens(int count, int vocab, ulong seed)
    {
        var rng = new Rng(seed);
        return Enumerable.Range(0, count).Select(_ => rng.NextInt(vocab)).ToArray();
    }

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * (1 + Math.Abs(expected[i])),
                $"{what}: index {i}: expected {expected[i]}, got {actual[i]}");
    }

    [Fact]
    public void ParametersHaveHuggingFaceNamesAndShapes()
    {
        var model = new Transformer(Tiny with { QkvBias = true }, 1);
        var shapes = model.Parameters.ToDictionary(p => p.Name, p => p.Value.Shape);
        // Tiny: C 16, 2 kv heads of dim 4 -> k_proj (8, 16); FFN 32 -> down_proj (16, 32).
        Assert.Equal([32, 16], shapes["model.embed_tokens.weight"]);
        Assert.Equal([8, 16], shapes["model.layers.1.self_attn.k_proj.weight"]);
        Assert.Equal([8], shapes["model.layers.1.self_attn.v_proj.bias"]);
        Assert.Equal([16, 32], shapes["model.layers.0.mlp.down_proj.weight"]);
        Assert.Equal([16], shapes["model.norm.weight"]);
        Assert.Equal([32, 16], shapes["lm_head.weight"]);
        Assert.Equal(Tiny.ParameterCount() + 2 * (16 + 8 + 8), model.Parameters.Sum(p => (long)p.Value.Size));

        var tied = new Transformer(Tiny with { TiedEmbeddings = true }, 1);
        Assert.DoesNotContain(tied.Parameters, p => p.Name == "lm_head.weight");
    }

    [Fact]
    public void InitialisationIsSeededAndScaled()
    {
        var a = new Transformer(TransformerConfig.Small, 3);
        var b = new Transformer(TransformerConfig.Small, 3);
        Assert.Equal(a.Parameters[1].Value.Data, b.Parameters[1].Value.Data);
        double Std(string name)
        {
            var data = a.Parameters.Single(p => p.Name == name).Value.Data;
            return Math.Sqrt(data.Average(x => (double)x * x));
        }
        // 0.02 for matrices; o_proj / down_proj 0.02 / sqrt(2 * 3 layers) = 0.00816; norms exactly 1.
        Assert.InRange(Std("model.layers.0.self_attn.q_proj.weight"), 0.019, 0.021);
        Assert.InRange(Std("model.layers.0.mlp.down_proj.weight"), 0.0078, 0.0085);
        Assert.All(a.Parameters.Single(p => p.Name == "model.norm.weight").Value.Data, x => Assert.Equal(1f, x));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void CachedForwardEqualsFullForwardPositionByPosition(bool qkvBias, bool tied)
    {
        var config = Tiny with { QkvBias = qkvBias, TiedEmbeddings = tied };
        var model = Model(config);
        if (qkvBias)
            foreach (var (name, p) in model.Parameters.Where(p => p.Name.EndsWith(".bias")))
                for (int i = 0; i < p.Size; i++) p.Data[i] = 0.1f * (i % 5 - 2);
        int B = 2, T = 7, prompt = 3;
        var tokens = RandomTokens(B * T, config.VocabSize, 11);
        using var _ = Autograd.NoGrad();
        var full = model.Forward(tokens, B, T);                                    // (B, T, V)

        // Prefill the first 3 tokens of each row at once, then one token at a time.
        var cache = new KvCache(config, B, capacity: 10);
        var stepLogits = new List<(int Start, Tensor Logits)>();
        stepLogits.Add((0, model.Forward(Slice(tokens, B, T, 0, prompt), B, prompt, cache)));
        for (int t = prompt; t < T; t++)
            stepLogits.Add((t, model.Forward(Slice(tokens, B, T, t, 1), B, 1, cache)));
        Assert.Equal(T, cache.Length);

        int V = config.VocabSize;
        foreach (var (start, logits) in stepLogits)
        {
            int n = logits.Dim(1);
            for (int b = 0; b < B; b++)
                for (int t = 0; t < n; t++)
                    AssertClose(full.Data.AsSpan(((b * T) + start + t) * V, V), logits.Data.AsSpan((b * n + t) * V, V), 1e-5f,
                        $"row {b} position {start + t}");
        }
    }

    [Fact]
    public void AGatheredCacheDecodesAsItsSourceRows()
    {
        // Two left-padded rows prefilled once, gathered as rows [1, 0, 1]: each gathered row's next
        // decode steps give the logits its source row gives when decoding the same tokens.
        var model = Model(Tiny);
        int B = 2, T = 4, V = Tiny.VocabSize;
        var tokens = RandomTokens(B * T, V, 9);
        bool[] keyMask = [true, true, true, true, false, true, true, true];
        int[] positions = [0, 1, 2, 3, 0, 0, 1, 2];
        int[] sourceRows = [1, 0, 1];
        using var _ = Autograd.NoGrad();
        var source = new KvCache(Tiny, B, capacity: T + 2);
        model.Forward(tokens, B, T, source, keyMask, positions);
        var gathered = source.Gather(sourceRows);
        Assert.Equal(T, gathered.Length);
        for (int step = 0; step < 2; step++)
        {
            int[] next = [3 + step, 5 + step];
            var expected = model.Forward(next, B, 1, source, positions: [4 + step, 3 + step]);                      // (2, 1, V)
            var actual = model.Forward(sourceRows.Select(r => next[r]).ToArray(), 3, 1, gathered,
                positions: sourceRows.Select(r => r == 0 ? 4 + step : 3 + step).ToArray());                        // (3, 1, V)
            for (int i = 0; i < sourceRows.Length; i++)
                AssertClose(expected.Data.AsSpan(sourceRows[i] * V, V), actual.Data.AsSpan(i * V, V), 1e-5f, $"step {step}, gathered row {i}");
        }
    }

    [Fact]
    public void LeftPaddedRowsMatchUnpaddedRowsAndCache()
    {
        // Row 0 is 6 real tokens. Row 1 is 2 pads then 4 real tokens at positions 0..3; its logits at the
        // real positions must equal those of the same 4 tokens run alone without padding.
        var model = Model(Tiny);
        int B = 2, T = 6, V = Tiny.VocabSize;
        var tokens = RandomTokens(B * T, V, 5);
        bool[] keyMask = [true, true, true, true, true, true, false, false, true, true, true, true];
        int[] positions = [0, 1, 2, 3, 4, 5, 0, 0, 0, 1, 2, 3];
        using var _ = Autograd.NoGrad();
        var padded = model.Forward(tokens, B, T, keyMask, positions);
        var alone = model.Forward(tokens[8..12], 1, 4);
        AssertClose(alone.Data, padded.Data.AsSpan((T + 2) * V, 4 * V), 1e-5f, "padded row 1");
        var row0 = model.Forward(tokens[..6], 1, 6);
        AssertClose(row0.Data, padded.Data.AsSpan(0, T * V), 1e-5f, "row 0");

        // The same batch through the cache: prefill 4 (with the padding), then 2 decode steps.
        var cache = new KvCache(Tiny, B, capacity: T);
        var prefill = model.Forward(Slice(tokens, B, T, 0, 4), B, 4, cache, Slice(keyMask, B, T, 0, 4), Slice(positions, B, T, 0, 4));
        for (int b = 0; b < B; b++)
            for (int t = 0; t < 4; t++)
                if (keyMask[b * T + t])
                    AssertClose(padded.Data.AsSpan((b * T + t) * V, V), prefill.Data.AsSpan((b * 4 + t) * V, V), 1e-5f, $"prefill {b},{t}");
        for (int t = 4; t < T; t++)
        {
            var step = model.Forward(Slice(tokens, B, T, t, 1), B, 1, cache, positions: Slice(positions, B, T, t, 1));
            for (int b = 0; b < B; b++)
                AssertClose(padded.Data.AsSpan((b * T + t) * V, V), step.Data.AsSpan(b * V, V), 1e-5f, $"decode {b},{t}");
        }
    }

    [Fact]
    public void ChangingAPaddedTokenChangesNoRealLogit()
    {
        var model = Model(Tiny);
        int B = 2, T = 5, V = Tiny.VocabSize;
        var tokens = RandomTokens(B * T, V, 9);
        bool[] keyMask = [true, true, true, true, true, false, true, true, true, true];
        int[] positions = [0, 1, 2, 3, 4, 0, 0, 1, 2, 3];
        using var _ = Autograd.NoGrad();
        var before = model.Forward(tokens, B, T, keyMask, positions);
        tokens[5] = (tokens[5] + 1) % V;
        var after = model.Forward(tokens, B, T, keyMask, positions);
        for (int i = 0; i < B * T; i++)
            if (keyMask[i])
                Assert.Equal(before.Data.AsSpan(i * V, V).ToArray(), after.Data.AsSpan(i * V, V).ToArray());
    }

    [Fact]
    public void AdamWStepsLowerTheLossOnAFixedBatch()
    {
        var model = new Transformer(Tiny, 2);
        var adam = new AdamW(model.Parameters, learningRate: 1e-2, weightDecay: 0.1);
        int B = 2, T = 8;
        var tokens = RandomTokens(B * T, Tiny.VocabSize, 3);
        var inputs = new int[B * (T - 1)];
        var targets = new int[B * (T - 1)];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T - 1; t++)
            {
                inputs[b * (T - 1) + t] = tokens[b * T + t];
                targets[b * (T - 1) + t] = tokens[b * T + t + 1];
            }
        float Loss() => Op.CrossEntropy(model.Forward(inputs, B, T - 1), targets).Item();
        float first = 0, last = 0;
        for (int step = 0; step < 10; step++)
        {
            adam.ZeroGrad();
            var loss = Op.CrossEntropy(model.Forward(inputs, B, T - 1), targets);
            Autograd.Backward(loss);
            if (step == 0) first = loss.Item();
            adam.Step();
        }
        using (Autograd.NoGrad()) last = Loss();
        // At init the logits are near zero, so the loss starts near ln 32 = 3.47; ten steps at lr 1e-2 memorise a little.
        Assert.InRange(first, 3.3f, 3.6f);
        Assert.True(last < first - 0.3f, $"loss went from {first} to {last}");
    }

    [Fact]
    public void CachedForwardRefusesToRecordAndOverflow()
    {
        var model = new Transformer(Tiny, 1);
        var cache = new KvCache(Tiny, 1, capacity: 2);
        Assert.Throws<InvalidOperationException>(() => model.Forward([1, 2], 1, 2, cache));
        using var _ = Autograd.NoGrad();
        model.Forward([1, 2], 1, 2, cache);
        Assert.Throws<InvalidOperationException>(() => model.Forward([3], 1, 1, cache));
    }

    /// <summary>Columns [start, start + n) of each row of a (B, T) array.</summary>
    private static TValue[] Slice<TValue>(TValue[] values, int B, int T, int start, int n)
    {
        var result = new TValue[B * n];
        for (int b = 0; b < B; b++) Array.Copy(values, b * T + start, result, b * n, n);
        return result;
    }
}
