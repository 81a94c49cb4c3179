// Tests of Ops/Softmax.cs, Ops/Attention.cs, Ops/CrossEntropy.cs and Ops/TokenLogProbs.cs:
// a gradient check (GradCheck.cs) per op over random small shapes, hand-worked values, and the laws
// the model relies on (decoding with a KV cache gives the rows of the full forward; a masked key
// changes nothing).
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Ops;

namespace Grpo.Tests;

public class OpsBTests
{
    [Fact]
    public void RowEntropyByHand()
    {
        // [0, 0]: p = [1/2, 1/2], H = ln 2. [0, ln 3]: p = [1/4, 3/4], H = ln 4 - (3/4) ln 3.
        var h = Op.RowEntropy(new Tensor([0f, 0, 0, MathF.Log(3)], 2, 2)).Data;
        Assert.Equal(Math.Log(2), h[0], 6);
        Assert.Equal(Math.Log(4) - 0.75 * Math.Log(3), h[1], 6);
        // A masked row is skipped (left 0).
        Assert.Equal([0f, h[1]], Op.RowEntropy(new Tensor([0f, 0, 0, MathF.Log(3)], 2, 2), [0f, 1]).Data);
    }

    [Property(MaxTest = 20)]
    public void SoftmaxAndLogSoftmaxGradients(int seed)
    {
        var rng = new Random(seed);
        var x = GradCheck.Random(rng, 2, rng.Next(1, 4), rng.Next(1, 6));
        GradCheck.AssertOk(GradCheck.Check(t => Op.Softmax(t[0]), [x], seed));
        GradCheck.AssertOk(GradCheck.Check(t => Op.LogSoftmax(t[0]), [x], seed));
    }

    [Fact]
    public void SoftmaxByHand()
    {
        // e^0 = 1 and e^(ln 3) = 3, so softmax = [1, 3] / 4 = [0.25, 0.75];
        // log-softmax = [ln 0.25, ln 0.75] = [-1.3863, -0.2877].
        var x = new Tensor([0f, MathF.Log(3f)], 1, 2);
        var y = Op.Softmax(x);
        Assert.Equal(0.25f, y.Data[0], 6);
        Assert.Equal(0.75f, y.Data[1], 6);
        var logY = Op.LogSoftmax(x);
        Assert.Equal(MathF.Log(0.25f), logY.Data[0], 5);
        Assert.Equal(MathF.Log(0.75f), logY.Data[1], 5);
    }

    [Property(MaxTest = 20)]
    public bool SoftmaxRowsSumToOneAndIgnoreAShift(int seed, float shift)
    {
        // Large entries (up to 80, e^80 overflows float) must not overflow: the row max is subtracted.
        var rng = new Random(seed);
        var x = GradCheck.Random(rng, 80, rng.Next(1, 4), rng.Next(1, 7)).Detach();
        float c = float.IsFinite(shift) ? Math.Clamp(shift, -50f, 50f) : 0f;
        var y = Op.Softmax(x).Data;
        var shifted = Op.Softmax(new Tensor(x.Data.Select(v => v + c).ToArray(), x.Shape)).Data;
        int cols = x.Dim(-1);
        for (int r = 0; r < x.Size / cols; r++)
            if (Math.Abs(y.AsSpan(r * cols, cols).ToArray().Sum() - 1f) > 1e-5f) return false;
        return y.Zip(shifted).All(pair => Math.Abs(pair.First - pair.Second) < 1e-5f);
    }

    [Property(MaxTest = 20)]
    public void CrossEntropyGradient(bool withWeights, int seed)
    {
        var rng = new Random(seed);
        int rows = rng.Next(1, 5), vocab = rng.Next(1, 6);
        var logits = GradCheck.Random(rng, 2, rows, vocab);
        var targets = Enumerable.Range(0, rows).Select(_ => rng.Next(vocab)).ToArray();
        // Weights of 0 (masked rows) among them, as padding gives; at least one row stays in.
        float[]? weights = withWeights ? Enumerable.Range(0, rows).Select(i => i == 0 ? 1f : rng.Next(3) * 0.5f).ToArray() : null;
        GradCheck.AssertOk(GradCheck.Check(t => Op.CrossEntropy(t[0], targets, weights), [logits], seed));
    }

    [Fact]
    public void CrossEntropyOfUniformLogitsIsLnV()
    {
        // Equal logits give softmax 1/V for every class, so -log(1/V) = ln V whatever the target:
        // V = 5 gives ln 5 = 1.6094. The gradient of row i is (1/V - onehot) / N.
        const int rows = 3, vocab = 5;
        var logits = Tensor.Parameter(Enumerable.Repeat(0.7f, rows * vocab).ToArray(), rows, vocab);
        var loss = Op.CrossEntropy(logits, [0, 4, 2]);
        Assert.Equal(MathF.Log(5f), loss.Item(), 5);
        Autograd.Backward(loss);
        Assert.Equal((0.2f - 1f) / 3f, logits.Grad![0], 6);
        Assert.Equal(0.2f / 3f, logits.Grad![1], 6);
    }

    [Fact]
    public void CrossEntropyWithAllWeightsZeroIsZero()
    {
        var logits = Tensor.Parameter([1f, 2f, 3f, 4f], 2, 2);
        var loss = Op.CrossEntropy(logits, [0, 1], [0f, 0f]);
        Assert.Equal(0f, loss.Item());
        Autograd.Backward(loss);
        Assert.All(logits.Grad ?? new float[4], g => Assert.Equal(0f, g));
    }

    [Fact]
    public void TargetOutsideTheVocabularyIsNamed()
    {
        var logits = new Tensor(new float[6], 2, 3);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Op.CrossEntropy(logits, [0, 3]));
        Assert.Equal(3, error.ActualValue);
        Assert.Contains("3", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Op.TokenLogProbs(logits, [-1, 0]));
    }

    [Property(MaxTest = 20)]
    public void TokenLogProbsGradient(int seed)
    {
        var rng = new Random(seed);
        int batch = rng.Next(1, 3), time = rng.Next(1, 4), vocab = rng.Next(1, 6);
        var logits = GradCheck.Random(rng, 2, batch, time, vocab);
        var targets = Enumerable.Range(0, batch * time).Select(_ => rng.Next(vocab)).ToArray();
        GradCheck.AssertOk(GradCheck.Check(t => Op.TokenLogProbs(t[0], targets), [logits], seed));
    }

    [Fact]
    public void TokenLogProbsByHand()
    {
        // logits [0, ln 3], target 1: log(3/4) = -0.2877; the gradient onehot - softmax = [0 - 0.25, 1 - 0.75].
        var logits = Tensor.Parameter([0f, MathF.Log(3f)], 1, 2);
        var logProbs = Op.TokenLogProbs(logits, [1]);
        Assert.Equal([1], logProbs.Shape);
        Assert.Equal(MathF.Log(0.75f), logProbs.Data[0], 5);
        Autograd.Backward(logProbs);
        Assert.Equal(-0.25f, logits.Grad![0], 6);
        Assert.Equal(0.25f, logits.Grad![1], 6);
    }

    [Property(MaxTest = 15)]
    public bool CrossEntropyIsTheWeightedMeanOfNegativeTokenLogProbs(int seed)
    {
        var rng = new Random(seed);
        int rows = rng.Next(1, 6), vocab = rng.Next(2, 7);
        var logits = GradCheck.Random(rng, 3, rows, vocab).Detach();
        var targets = Enumerable.Range(0, rows).Select(_ => rng.Next(vocab)).ToArray();
        var weights = Enumerable.Range(0, rows).Select(_ => (float)rng.NextDouble() + 0.1f).ToArray();
        var logProbs = Op.TokenLogProbs(logits, targets).Data;
        double expected = -logProbs.Zip(weights, (lp, w) => (double)lp * w).Sum() / weights.Sum();
        return Math.Abs(Op.CrossEntropy(logits, targets, weights).Item() - expected) < 1e-5;
    }

    /// <summary>A random attention problem: B, T queries, S >= T keys, grouped heads, a key mask with some false entries.</summary>
    private sealed record AttentionCase(Tensor Q, Tensor K, Tensor V, bool[]? KeyMask, int Offset);

    private static AttentionCase RandomAttention(Random rng, bool masked)
    {
        int batch = rng.Next(1, 3), time = rng.Next(1, 4), keys = time + rng.Next(0, 3);
        int kvHeads = rng.Next(1, 3), headDim = rng.Next(1, 5);
        int queryHeads = kvHeads * rng.Next(1, 3);   // grouped-query when Hq = 2 Hkv
        var q = GradCheck.Random(rng, 1, batch, time, queryHeads, headDim);
        var k = GradCheck.Random(rng, 1, batch, keys, kvHeads, headDim);
        var v = GradCheck.Random(rng, 1, batch, keys, kvHeads, headDim);
        bool[]? keyMask = masked ? Enumerable.Range(0, batch * keys).Select(_ => rng.Next(3) != 0).ToArray() : null;
        int offset = rng.Next(2) == 0 ? -1 : rng.Next(0, keys - time + 1);   // -1 means S - T
        return new AttentionCase(q, k, v, keyMask, offset);
    }

    [Property(MaxTest = 25)]
    public void AttentionGradient(bool masked, int seed)
    {
        var rng = new Random(seed);
        var c = RandomAttention(rng, masked);
        GradCheck.AssertOk(GradCheck.Check(t => Op.Attention(t[0], t[1], t[2], c.KeyMask, c.Offset), [c.Q, c.K, c.V], seed));
    }

    [Fact]
    public void AttentionGradientGroupedMaskedWithOffset()
    {
        // The case the property draws only sometimes, fixed: Hq = 2 Hkv, masked keys, T < S, explicit offset.
        var rng = new Random(7);
        var q = GradCheck.Random(rng, 1, 2, 2, 4, 3);
        var k = GradCheck.Random(rng, 1, 2, 4, 2, 3);
        var v = GradCheck.Random(rng, 1, 2, 4, 2, 3);
        bool[] keyMask = [true, false, true, true, false, true, true, false];
        GradCheck.AssertOk(GradCheck.Check(t => Op.Attention(t[0], t[1], t[2], keyMask, 1), [q, k, v], 7, maxPerInput: 100));
    }

    /// <summary>Attention straight from its definition, in float64, one score at a time.</summary>
    private static double[] NaiveAttention(Tensor q, Tensor k, Tensor v, bool[]? keyMask, int offset)
    {
        int B = q.Dim(0), T = q.Dim(1), Hq = q.Dim(2), D = q.Dim(3), S = k.Dim(1), Hkv = k.Dim(2);
        var output = new double[q.Size];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int h = 0; h < Hq; h++)
                {
                    int g = h / (Hq / Hkv);
                    var scores = new List<(int Key, double Score)>();
                    for (int s = 0; s <= Math.Min(offset + t, S - 1); s++)
                    {
                        if (keyMask != null && !keyMask[b * S + s]) continue;
                        double dot = 0;
                        for (int d = 0; d < D; d++) dot += (double)q.Data[((b * T + t) * Hq + h) * D + d] * k.Data[((b * S + s) * Hkv + g) * D + d];
                        scores.Add((s, dot / Math.Sqrt(D)));
                    }
                    if (scores.Count == 0) continue;
                    double max = scores.Max(x => x.Score), total = scores.Sum(x => Math.Exp(x.Score - max));
                    foreach (var (s, score) in scores)
                        for (int d = 0; d < D; d++)
                            output[((b * T + t) * Hq + h) * D + d] += Math.Exp(score - max) / total * v.Data[((b * S + s) * Hkv + g) * D + d];
                }
        return output;
    }

    [Theory]
    [InlineData(16, 37)]   // one 16-wide block of the head, keys in 32- and 16-wide blocks and a tail
    [InlineData(33, 50)]   // a 32-wide block of the head and a tail
    public void AttentionAgreesWithItsDefinitionAtWidthsThatUseEveryVectorPath(int headDim, int keys)
    {
        var rng = new Random(headDim);
        int batch = 2, time = keys - 5, kvHeads = 2, queryHeads = 4;
        var q = GradCheck.Random(rng, 1, batch, time, queryHeads, headDim);
        var k = GradCheck.Random(rng, 1, batch, keys, kvHeads, headDim);
        var v = GradCheck.Random(rng, 1, batch, keys, kvHeads, headDim);
        bool[] keyMask = Enumerable.Range(0, batch * keys).Select(i => i % 7 != 3).ToArray();
        var expected = NaiveAttention(q, k, v, keyMask, 5);
        var actual = Op.Attention(q.Detach(), k.Detach(), v.Detach(), keyMask).Data;
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-5, $"element {i}: {expected[i]} vs {actual[i]}");
        GradCheck.AssertOk(GradCheck.Check(t => Op.Attention(t[0], t[1], t[2], keyMask), [q, k, v], headDim, maxPerInput: 12));
    }

    [Theory]
    [InlineData(24, 1)]   // decoding at the small preset's head: a 16-wide block, an 8-wide block
    [InlineData(33, 2)]   // 16 + 16 + a scalar tail, two queries
    [InlineData(7, 3)]    // narrower than any vector
    public void DecodingAttentionAgreesWithItsDefinitionAtWidthsThatUseEveryVectorPath(int headDim, int time)
    {
        // Fewer than four queries score each key with a dot product (K read in place), not through K^T.
        var rng = new Random(headDim);
        int batch = 2, keys = 40, kvHeads = 2, queryHeads = 4, offset = keys - time - 3;   // the last 3 keys are never read
        var q = GradCheck.Random(rng, 1, batch, time, queryHeads, headDim);
        var k = GradCheck.Random(rng, 1, batch, keys, kvHeads, headDim);
        var v = GradCheck.Random(rng, 1, batch, keys, kvHeads, headDim);
        bool[] keyMask = Enumerable.Range(0, batch * keys).Select(i => i % 5 != 2).ToArray();
        var expected = NaiveAttention(q, k, v, keyMask, offset);
        var actual = Op.Attention(q.Detach(), k.Detach(), v.Detach(), keyMask, offset).Data;
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-5, $"element {i}: {expected[i]} vs {actual[i]}");
    }

    [Fact]
    public void AttentionWithOneKeyReturnsV()
    {
        // One key: softmax over a single score is [1] whatever q . k is, so every query head reads v.
        var q = new Tensor([3f, -1f, 0.5f, 2f], 1, 1, 2, 2);
        var k = new Tensor([0.3f, 0.9f], 1, 1, 1, 2);
        var v = new Tensor([1.5f, -2f], 1, 1, 1, 2);
        Assert.Equal([1.5f, -2f, 1.5f, -2f], Op.Attention(q, k, v).Data);
    }

    [Fact]
    public void AttentionByHand()
    {
        // Query 1 sees keys 0 and 1; q . k = [0, ln 3 * sqrt(2)] / sqrt(2) = [0, ln 3], so P = [0.25, 0.75]
        // and o = 0.25 [4, 0] + 0.75 [0, 8] = [1, 6]. Query 0 sees only key 0: o = [4, 0].
        float a = MathF.Log(3f) * MathF.Sqrt(2f);
        var q = new Tensor([0f, 0f, 1f, 0f], 1, 2, 1, 2);
        var k = new Tensor([0f, 1f, a, 0f], 1, 2, 1, 2);
        var v = new Tensor([4f, 0f, 0f, 8f], 1, 2, 1, 2);
        var o = Op.Attention(q, k, v).Data;
        Assert.Equal(4f, o[0], 5);
        Assert.Equal(0f, o[1], 5);
        Assert.Equal(1f, o[2], 5);
        Assert.Equal(6f, o[3], 5);
    }

    [Fact]
    public void AttentionWithNoAllowedKeyGivesZerosAndZeroGradient()
    {
        // Row 0 of batch 0 is padding and query 0 sees only key 0: no allowed key, so zeros, not NaN.
        var rng = new Random(3);
        var q = GradCheck.Random(rng, 1, 1, 2, 1, 2);
        var k = GradCheck.Random(rng, 1, 1, 2, 1, 2);
        var v = GradCheck.Random(rng, 1, 1, 2, 1, 2);
        var o = Op.Attention(q, k, v, [false, true]);
        Assert.Equal([0f, 0f], o.Data[..2]);
        Autograd.Backward(o, [1f, 1f, 1f, 1f]);
        Assert.Equal([0f, 0f], q.Grad![..2]);
        Assert.Equal([0f, 0f], k.Grad![..2]);
        Assert.Equal([0f, 0f], v.Grad![..2]);
        Assert.All(o.Data.Concat(q.Grad).Concat(k.Grad).Concat(v.Grad), x => Assert.True(float.IsFinite(x)));
    }

    [Property(MaxTest = 20)]
    public bool AttentionWithACacheGivesTheRowsOfFullAttention(int seed)
    {
        // The last T' queries against all S keys (offset S - T') equal rows S - T' .. S - 1 of full causal
        // attention over S queries: decoding with a KV cache reproduces the full forward.
        var rng = new Random(seed);
        int batch = rng.Next(1, 3), keys = rng.Next(1, 6), recent = rng.Next(1, keys + 1);
        int kvHeads = rng.Next(1, 3), queryHeads = kvHeads * rng.Next(1, 3), headDim = rng.Next(1, 5);
        var q = GradCheck.Random(rng, 1, batch, keys, queryHeads, headDim).Detach();
        var k = GradCheck.Random(rng, 1, batch, keys, kvHeads, headDim).Detach();
        var v = GradCheck.Random(rng, 1, batch, keys, kvHeads, headDim).Detach();
        bool[] keyMask = Enumerable.Range(0, batch * keys).Select(_ => rng.Next(4) != 0).ToArray();
        var full = Op.Attention(q, k, v, keyMask).Data;

        int rowSize = queryHeads * headDim;
        var lastQueries = new float[batch * recent * rowSize];
        for (int b = 0; b < batch; b++)
            Array.Copy(q.Data, (b * keys + keys - recent) * rowSize, lastQueries, b * recent * rowSize, recent * rowSize);
        var cached = Op.Attention(new Tensor(lastQueries, batch, recent, queryHeads, headDim), k, v, keyMask, keys - recent).Data;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < recent * rowSize; i++)
                if (Math.Abs(full[(b * keys + keys - recent) * rowSize + i] - cached[b * recent * rowSize + i]) > 1e-6f) return false;
        return true;
    }

    [Property(MaxTest = 20)]
    public bool AMaskedKeyNeverChangesTheOutput(int seed)
    {
        var rng = new Random(seed);
        var c = RandomAttention(rng, masked: true);
        var before = Op.Attention(c.Q.Detach(), c.K.Detach(), c.V.Detach(), c.KeyMask, c.Offset).Data;
        int keys = c.K.Dim(1), rowSize = c.K.Dim(2) * c.K.Dim(3);
        var k = c.K.Detach();
        var v = c.V.Detach();
        for (int key = 0; key < c.KeyMask!.Length; key++)
            if (!c.KeyMask[key])
                for (int i = 0; i < rowSize; i++)
                {
                    k.Data[key * rowSize + i] = (float)(rng.NextDouble() * 20 - 10);
                    v.Data[key * rowSize + i] = (float)(rng.NextDouble() * 20 - 10);
                }
        var after = Op.Attention(c.Q.Detach(), k, v, c.KeyMask, c.Offset).Data;
        return before.SequenceEqual(after) && keys > 0;
    }
}
