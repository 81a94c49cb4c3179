// Tests of Reduce, Embedding, RmsNorm, Silu/SwiGlu and Rope: numbers worked out by hand, laws as
// FsCheck properties, and a gradient check (GradCheck.cs) of every op over random small shapes.
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Ops;

namespace Grpo.Tests;

public class OpsATests
{
    private static void AssertClose(float[] expected, float[] actual, float tolerance = 1e-4f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"element {i}: expected {expected[i]}, got {actual[i]}");
    }

    /// <summary>Random values pushed at least `gap` away from zero (where RMSNorm and finite differences both bend).</summary>
    private static Tensor AwayFromZero(Random rng, float gap, params int[] shape)
    {
        var t = GradCheck.Random(rng, 1, shape);
        for (int i = 0; i < t.Size; i++) t.Data[i] = MathF.CopySign(gap + Math.Abs(t.Data[i]), t.Data[i]);
        return t;
    }

    // Reduce

    [Fact]
    public void ReduceByHand()
    {
        // x = [[1, 2, 3], [4, 5, 6]]: columns sum to [5, 7, 9], rows average to [6/3, 15/3] = [2, 5],
        // all sum to 21 and average 21 / 6 = 3.5.
        var x = Tensor.Parameter([1, 2, 3, 4, 5, 6], 2, 3);
        var sum0 = Op.Sum(x, 0);
        Assert.Equal([3], sum0.Shape);
        Assert.Equal([5f, 7, 9], sum0.Data);
        var meanLast = Op.Mean(x, -1);
        Assert.Equal([2], meanLast.Shape);
        Assert.Equal([2f, 5], meanLast.Data);
        var all = Op.SumAll(x);
        Assert.Empty(all.Shape);
        Assert.Equal(21f, all.Item());
        Assert.Equal(3.5f, Op.MeanAll(x).Item());
        // d mean_j x[i, j] / d x[i, j] = 1/3 for every element; weighting the rows by [1, -2]:
        Autograd.Backward(meanLast, [1f, -2f]);
        AssertClose([1 / 3f, 1 / 3f, 1 / 3f, -2 / 3f, -2 / 3f, -2 / 3f], x.Grad!);
    }

    [Fact]
    public void ReduceRejectsAnAxisOutsideTheShape()
    {
        var x = Tensor.Zeros(2, 3);
        Assert.Throws<ArgumentOutOfRangeException>(() => Op.Sum(x, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Op.Mean(x, -3));
    }

    /// <summary>Gradients of all four reductions, over a random shape and a random (possibly negative) axis.</summary>
    [Property(MaxTest = 25)]
    public void ReduceGradients(int seed)
    {
        var rng = new Random(seed);
        int rank = rng.Next(1, 4);
        var shape = Enumerable.Range(0, rank).Select(_ => rng.Next(1, 5)).ToArray();
        int axis = rng.Next(-rank, rank);
        var x = GradCheck.Random(rng, 1, shape);
        GradCheck.AssertOk(GradCheck.Check(t => Op.Sum(t[0], axis), [x], seed));
        GradCheck.AssertOk(GradCheck.Check(t => Op.Mean(t[0], axis), [x], seed));
        GradCheck.AssertOk(GradCheck.Check(t => Op.SumAll(t[0]), [x], seed));
        GradCheck.AssertOk(GradCheck.Check(t => Op.MeanAll(t[0]), [x], seed));
    }

    /// <summary>Law: summing along one axis and then over everything left is the sum of everything.</summary>
    [Property(MaxTest = 25)]
    public bool SumAlongAnAxisKeepsTheTotal(int seed)
    {
        var rng = new Random(seed);
        int rank = rng.Next(1, 4);
        var shape = Enumerable.Range(0, rank).Select(_ => rng.Next(1, 6)).ToArray();
        var x = GradCheck.Random(rng, 1, shape);
        var mean = Op.Mean(x, rng.Next(-rank, rank));
        return Math.Abs(Op.SumAll(Op.Sum(x, rng.Next(rank))).Item() - Op.SumAll(x).Item()) < 1e-4
            && Math.Abs(Op.MeanAll(mean).Item() - Op.MeanAll(x).Item()) < 1e-5;
    }

    // Embedding

    [Fact]
    public void EmbeddingByHand()
    {
        // table rows: 0 -> [1, 2], 1 -> [3, 4], 2 -> [5, 6]; ids [2, 0, 2] read rows 2, 0, 2.
        var table = Tensor.Parameter([1, 2, 3, 4, 5, 6], 3, 2);
        var y = Op.Embedding(table, [2, 0, 2]);
        Assert.Equal([3, 2], y.Shape);
        Assert.Equal([5f, 6, 1, 2, 5, 6], y.Data);
        // dy = [[1, 10], [100, 1000], [2, 20]]: row 0 gets [100, 1000], row 1 nothing,
        // row 2 both of its uses: [1 + 2, 10 + 20] = [3, 30].
        Autograd.Backward(y, [1f, 10, 100, 1000, 2, 20]);
        Assert.Equal([100f, 1000, 0, 0, 3, 30], table.Grad!);
    }

    [Fact]
    public void EmbeddingRejectsAnIdOutsideTheTable()
    {
        var table = Tensor.Zeros(3, 2);
        Assert.Throws<ArgumentOutOfRangeException>(() => Op.Embedding(table, [0, 3]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Op.Embedding(table, [-1]));
    }

    [Property(MaxTest = 25)]
    public void EmbeddingGradient(int seed)
    {
        var rng = new Random(seed);
        int vocab = rng.Next(1, 5), channels = rng.Next(1, 4);
        // More ids than rows, so ids repeat and the scatter-add is exercised.
        var ids = Enumerable.Range(0, rng.Next(1, 8)).Select(_ => rng.Next(vocab)).ToArray();
        var table = GradCheck.Random(rng, 1, vocab, channels);
        GradCheck.AssertOk(GradCheck.Check(t => Op.Embedding(t[0], ids), [table], seed));
    }

    // RmsNorm

    [Fact]
    public void RmsNormByHand()
    {
        // x = [3, 4], w = 1, eps = 0: rms = sqrt((9 + 16) / 2) = 3.5355 -> [3, 4] / 3.5355 = [0.8485, 1.1314].
        var x = Tensor.Parameter([3, 4], 1, 2);
        var weight = Tensor.Parameter([1, 1], 2);
        var y = Op.RmsNorm(x, weight, 0f);
        AssertClose([0.8485f, 1.1314f], y.Data);
        // y0 = sqrt2 * x0 / |x| with |x| = 5, so dy0/dx0 = sqrt2 * (|x|^2 - x0^2) / |x|^3 = 1.41421 * 16 / 125
        // = 0.18102 and dy0/dx1 = sqrt2 * (-x0 x1) / |x|^3 = 1.41421 * -12 / 125 = -0.13576;
        // dy0/dw0 = x0 / rms = 0.8485, dy0/dw1 = 0.
        Autograd.Backward(y, [1f, 0f]);
        AssertClose([0.18102f, -0.13576f], x.Grad!);
        AssertClose([0.8485f, 0f], weight.Grad!);
        // eps = 0.5 and w = [2, -1]: rms = sqrt(12.5 + 0.5) = 3.6056 -> [2 * 0.83205, -1 * 1.10940].
        var scaled = Op.RmsNorm(new Tensor([3, 4], 2), new Tensor([2, -1], 2), 0.5f);
        AssertClose([1.6641f, -1.1094f], scaled.Data);
    }

    [Property(MaxTest = 25)]
    public void RmsNormGradient(int seed)
    {
        var rng = new Random(seed);
        int channels = rng.Next(1, 7);
        var x = AwayFromZero(rng, 0.3f, rng.Next(1, 3), rng.Next(1, 3), channels);
        var weight = GradCheck.Random(rng, 2, channels);
        GradCheck.AssertOk(GradCheck.Check(t => Op.RmsNorm(t[0], t[1], 1e-5f), [x, weight], seed, h: 3e-3));
    }

    /// <summary>Law: with weight 1 and eps 0, every output row has mean square 1, whatever the row's scale.</summary>
    [Property(MaxTest = 25)]
    public bool RmsNormRowsHaveUnitMeanSquare(int seed)
    {
        var rng = new Random(seed);
        int channels = rng.Next(1, 9), rows = rng.Next(1, 4);
        var x = AwayFromZero(rng, 0.1f, rows, channels);
        float rowScale = (float)Math.Pow(10, rng.Next(-3, 4));
        for (int i = 0; i < x.Size; i++) x.Data[i] *= rowScale;
        var y = Op.RmsNorm(x, new Tensor(Enumerable.Repeat(1f, channels).ToArray(), channels), 0f);
        var meanSquares = Op.Mean(Op.Mul(y, y), -1).Data;
        return meanSquares.All(m => Math.Abs(m - 1) < 1e-5);
    }

    // Silu and SwiGlu

    [Fact]
    public void SiluAndSwiGluByHand()
    {
        // silu(0) = 0 * sigmoid(0) = 0, silu'(0) = s (1 + x (1 - s)) = 0.5 * 1 = 0.5.
        // silu(1) = 1 / (1 + e^-1) = 0.731059, silu'(1) = 0.731059 * (1 + 0.268941) = 0.927671.
        var x = Tensor.Parameter([0, 1], 2);
        var y = Op.Silu(x);
        AssertClose([0f, 0.731059f], y.Data, 1e-6f);
        Autograd.Backward(y, [1f, 1f]);
        AssertClose([0.5f, 0.927671f], x.Grad!, 1e-6f);
        // SwiGlu(gate 1, up 2) = 0.731059 * 2 = 1.462117; d/dgate = 2 * 0.927671 = 1.855342; d/dup = 0.731059.
        var gate = Tensor.Parameter([1], 1);
        var up = Tensor.Parameter([2], 1);
        var z = Op.SwiGlu(gate, up);
        AssertClose([1.462117f], z.Data, 1e-6f);
        Autograd.Backward(z);
        AssertClose([1.855342f], gate.Grad!, 1e-6f);
        AssertClose([0.731059f], up.Grad!, 1e-6f);
    }

    /// <summary>Law: silu(x) - silu(-x) = x (sigmoid(x) + sigmoid(-x) = 1).</summary>
    [Property(MaxTest = 25)]
    public bool SiluIsXPlusAnEvenFunction(int seed)
    {
        var rng = new Random(seed);
        var x = GradCheck.Random(rng, 8, rng.Next(1, 20));
        var difference = Op.Sub(Op.Silu(x), Op.Silu(Op.Scale(x, -1))).Data;
        return difference.Zip(x.Data).All(p => Math.Abs(p.First - p.Second) < 1e-5 * (1 + Math.Abs(p.Second)));
    }

    [Property(MaxTest = 25)]
    public void SiluAndSwiGluGradients(int seed)
    {
        var rng = new Random(seed);
        int[] shape = [rng.Next(1, 4), rng.Next(1, 5)];
        var gate = GradCheck.Random(rng, 4, shape);
        var up = GradCheck.Random(rng, 2, shape);
        GradCheck.AssertOk(GradCheck.Check(t => Op.Silu(t[0]), [gate], seed, h: 3e-3));
        GradCheck.AssertOk(GradCheck.Check(t => Op.SwiGlu(t[0], t[1]), [gate, up], seed, h: 3e-3));
    }

    [Fact]
    public void SwiGluRejectsDifferentShapes() =>
        Assert.Throws<ArgumentException>(() => Op.SwiGlu(Tensor.Zeros(2, 3), Tensor.Zeros(3, 2)));

    // Rope

    [Fact]
    public void RopeByHand()
    {
        // D = 2, position 1: angle = 1 * theta^0 = 1 rad, [1, 0] -> [cos 1, sin 1] = [0.540302, 0.841471].
        var two = Op.Rope(new Tensor([1, 0], 1, 1, 1, 2), [1], 10000f);
        AssertClose([0.540302f, 0.841471f], two.Data, 1e-6f);
        // D = 4, theta = 10000: inv_freq = [10000^0, 10000^(-2/4)] = [1, 0.01]; pairs are (0, 2) and (1, 3).
        // At position 1, [1, 0, 0, 0] turns by 1 rad inside pair (0, 2) -> [cos 1, 0, sin 1, 0], and
        // [0, 1, 0, 0] turns by 0.01 rad inside pair (1, 3) -> [0, cos 0.01, 0, sin 0.01] = [0, 0.99995, 0, 0.0099998].
        var four = Op.Rope(new Tensor([1, 0, 0, 0, 0, 1, 0, 0], 1, 1, 2, 4), [1], 10000f);
        AssertClose([0.540302f, 0, 0.841471f, 0, 0, 0.99995f, 0, 0.0099998f], four.Data, 1e-6f);
        // The backward turns back: with dy = y, dx = x.
        var x = Tensor.Parameter([1, 0], 1, 1, 1, 2);
        var y = Op.Rope(x, [1], 10000f);
        Autograd.Backward(y, y.Data);
        AssertClose([1f, 0f], x.Grad!, 1e-6f);
    }

    /// <summary>Law: at position 0 every angle is 0, so RoPE is the identity.</summary>
    [Property(MaxTest = 20)]
    public bool RopeAtPositionZeroIsTheIdentity(int seed)
    {
        var rng = new Random(seed);
        int batch = rng.Next(1, 3), time = rng.Next(1, 4);
        var x = GradCheck.Random(rng, 1, batch, time, rng.Next(1, 3), 2 * rng.Next(1, 5));
        return Op.Rope(x, new int[batch * time], 10000f).Data.SequenceEqual(x.Data);
    }

    /// <summary>Law: RoPE is a rotation of each pair (i, i + D/2), so it keeps each pair's length.</summary>
    [Property(MaxTest = 20)]
    public bool RopePreservesTheNormOfEachPair(int seed)
    {
        var rng = new Random(seed);
        int batch = rng.Next(1, 3), time = rng.Next(1, 4), heads = rng.Next(1, 3), headDim = 2 * rng.Next(1, 5), half = headDim / 2;
        var x = GradCheck.Random(rng, 3, batch, time, heads, headDim);
        var positions = Enumerable.Range(0, batch * time).Select(_ => rng.Next(0, 2048)).ToArray();
        var y = Op.Rope(x, positions, 10000f).Data;
        for (int start = 0; start < x.Size; start += headDim)
            for (int i = 0; i < half; i++)
            {
                double before = Math.Pow(x.Data[start + i], 2) + Math.Pow(x.Data[start + i + half], 2);
                double after = Math.Pow(y[start + i], 2) + Math.Pow(y[start + i + half], 2);
                if (Math.Abs(before - after) > 1e-5 * (1 + before)) return false;
            }
        return true;
    }

    /// <summary>Law (why RoPE exists): the dot product of a query at m and a key at n depends only on m - n.</summary>
    [Property(MaxTest = 20)]
    public bool RopeDotProductDependsOnlyOnRelativePosition(int seed)
    {
        var rng = new Random(seed);
        int headDim = 2 * rng.Next(1, 5);
        var query = GradCheck.Random(rng, 1, 1, 1, 1, headDim);
        var key = GradCheck.Random(rng, 1, 1, 1, 1, headDim);
        int m = rng.Next(0, 50), n = rng.Next(0, 50), shift = rng.Next(0, 50);
        float Dot(int queryPosition, int keyPosition) =>
            Op.Rope(query, [queryPosition], 10000f).Data.Zip(Op.Rope(key, [keyPosition], 10000f).Data).Sum(p => p.First * p.Second);
        return Math.Abs(Dot(m, n) - Dot(m + shift, n + shift)) < 1e-4;
    }

    [Property(MaxTest = 25)]
    public void RopeGradient(int seed)
    {
        var rng = new Random(seed);
        int batch = rng.Next(1, 3), time = rng.Next(1, 4);
        var x = GradCheck.Random(rng, 1, batch, time, rng.Next(1, 3), 2 * rng.Next(1, 4));
        var positions = Enumerable.Range(0, batch * time).Select(_ => rng.Next(0, 20)).ToArray();
        GradCheck.AssertOk(GradCheck.Check(t => Op.Rope(t[0], positions, 100f), [x], seed));
    }

    /// <summary>The cached cos/sin table is rebuilt for another theta or head size and grown for later positions.</summary>
    [Fact]
    public void RopeTableFollowsThetaAndPosition()
    {
        var x = new Tensor([1, 0, 0, 0], 1, 1, 1, 4);
        // theta 100, D 4, position 5: angles [5, 5 * 100^(-1/2)] = [5, 0.5] rad.
        var expected = new[] { MathF.Cos(5), MathF.Cos(0.5f), MathF.Sin(5), MathF.Sin(0.5f) };
        var input = new Tensor([1, 1, 0, 0], 1, 1, 1, 4);
        AssertClose(expected, Op.Rope(input, [5], 100f).Data, 1e-6f);
        Op.Rope(x, [3], 10000f);
        Op.Rope(new Tensor(new float[6], 1, 1, 1, 6), [1], 100f);
        Op.Rope(x, [5000], 100f);
        AssertClose(expected, Op.Rope(input, [5], 100f).Data, 1e-6f);
    }

    /// <summary>Shapes big enough to run rows in parallel give what each row gives alone (forward and backward).</summary>
    [Fact]
    public void ParallelRowsAgreeWithRowByRow()
    {
        var rng = new Random(7);
        int rows = 48, channels = 1024;
        var x = GradCheck.Random(rng, 1, rows, channels);
        var weight = GradCheck.Random(rng, 1, channels);
        var dy = GradCheck.Random(rng, 1, rows, channels).Data;
        var positions = Enumerable.Range(0, rows).Select(_ => rng.Next(0, 3000)).ToArray();
        var rope = Op.Rope(x.Reshape(1, rows, 8, channels / 8), positions, 10000f);
        Autograd.Backward(rope, dy);
        var ropeGrad = (float[])x.Grad!.Clone();
        x.ZeroGrad();
        var norm = Op.RmsNorm(x, weight, 1e-5f);
        Autograd.Backward(norm, dy);
        var silu = Op.Silu(x);
        var columnSums = Op.Sum(x, 0);
        var rowMeans = Op.Mean(x, -1);
        for (int row = 0; row < rows; row++)
        {
            var range = new Range(row * channels, (row + 1) * channels);
            var xRow = Tensor.Parameter(x.Data[range], 1, channels);
            var ropeRow = Op.Rope(xRow.Reshape(1, 1, 8, channels / 8), [positions[row]], 10000f);
            Assert.Equal(ropeRow.Data, rope.Data[range]);
            Autograd.Backward(ropeRow, dy[range]);
            Assert.Equal(xRow.Grad!, ropeGrad[range]);
            xRow.ZeroGrad();
            var normRow = Op.RmsNorm(xRow, weight.Detach(), 1e-5f);
            Assert.Equal(normRow.Data, norm.Data[range]);
            Autograd.Backward(normRow, dy[range]);
            Assert.Equal(xRow.Grad!, x.Grad![range]);
            Assert.Equal(Op.Silu(xRow).Data, silu.Data[range]);
            Assert.Equal(Op.MeanAll(xRow).Item(), rowMeans.Data[row]);
        }
        for (int c = 0; c < channels; c++)
        {
            double sum = 0;
            for (int row = 0; row < rows; row++) sum += x.Data[row * channels + c];
            Assert.True(Math.Abs(sum - columnSums.Data[c]) < 1e-4, $"column {c}: {sum} vs {columnSums.Data[c]}");
        }
    }

    [Fact]
    public void RopeRejectsBadShapesAndPositions()
    {
        Assert.Throws<ArgumentException>(() => Op.Rope(Tensor.Zeros(1, 1, 1, 3), [0], 10000f));
        Assert.Throws<ArgumentException>(() => Op.Rope(Tensor.Zeros(1, 2, 1, 4), [0], 10000f));
        Assert.Throws<ArgumentOutOfRangeException>(() => Op.Rope(Tensor.Zeros(1, 1, 1, 4), [-1], 10000f));
    }
}
