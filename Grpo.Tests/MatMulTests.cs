using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Compute;
using Grpo.Ops;

namespace Grpo.Tests;

public class MatMulTests
{
    [Fact]
    public void TwoByTwoByHand()
    {
        // [1 2; 3 4] @ [5 6; 7 8] = [1*5+2*7, 1*6+2*8; 3*5+4*7, 3*6+4*8] = [19 22; 43 50]
        var a = new Tensor([1, 2, 3, 4], 2, 2);
        var b = new Tensor([5, 6, 7, 8], 2, 2);
        Assert.Equal([19f, 22, 43, 50], Op.MatMul(a, b).Data);
        // With transposeB the second operand is read as [5 7; 6 8]: [1*5+2*6, 1*7+2*8; ...] = [17 23; 39 53]
        Assert.Equal([17f, 23, 39, 53], Op.MatMul(a, b, transposeB: true).Data);
    }

    /// <summary>The fast kernel equals the triple loop in float64, at every size around the tile edges.</summary>
    [Property(MaxTest = 60)]
    public bool GemmMatchesNaiveLoop(PositiveInt m0, PositiveInt k0, PositiveInt n0, int seed)
    {
        int m = m0.Get % 70 + 1, k = k0.Get % 300 + 1, n = n0.Get % 80 + 1;
        var rng = new Random(seed);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var c = Enumerable.Range(0, m * n).Select(_ => (float)rng.NextDouble()).ToArray();
        var expected = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = c[i * n + j];
                for (int p = 0; p < k; p++) s += (double)a[i * k + p] * b[p * n + j];
                expected[i * n + j] = s;
            }
        CpuGemm.Multiply(a, b, c, m, k, n, accumulate: true);
        for (int i = 0; i < c.Length; i++)
            if (Math.Abs(c[i] - expected[i]) > 1e-4 * (1 + Math.Abs(expected[i]))) return false;
        return true;
    }

    /// <summary>With A stored transposed, (K, M), and read in place: the same triple loop, at sizes that reach the 8 x 32 tiles and their edges.</summary>
    [Property(MaxTest = 40)]
    public bool GemmWithTransposedAMatchesNaiveLoop(PositiveInt m0, PositiveInt k0, PositiveInt n0, int seed)
    {
        int m = m0.Get % 70 + 1, k = k0.Get % 300 + 1, n = n0.Get % 80 + 1;
        var rng = new Random(seed);
        var aT = Enumerable.Range(0, k * m).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();   // (K, M)
        var b = Enumerable.Range(0, k * n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var c = Enumerable.Range(0, m * n).Select(_ => (float)rng.NextDouble()).ToArray();
        var expected = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = c[i * n + j];
                for (int p = 0; p < k; p++) s += (double)aT[p * m + i] * b[p * n + j];
                expected[i * n + j] = s;
            }
        CpuGemm.Multiply(aT, transposeA: true, b, c, m, k, n, accumulate: true);
        for (int i = 0; i < c.Length; i++)
            if (Math.Abs(c[i] - expected[i]) > 1e-4 * (1 + Math.Abs(expected[i]))) return false;
        return true;
    }

    [Fact]
    public void LargeGemmMatchesNaiveLoop()
    {
        const int n = 512;
        var rng = new Random(1);
        var a = Enumerable.Range(0, n * n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var b = Enumerable.Range(0, n * n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var c = new float[n * n];
        CpuGemm.Multiply(a, b, c, n, n, n, accumulate: false);
        for (int t = 0; t < 200; t++)
        {
            int i = rng.Next(n), j = rng.Next(n);
            double s = 0;
            for (int p = 0; p < n; p++) s += (double)a[i * n + p] * b[p * n + j];
            Assert.True(Math.Abs(c[i * n + j] - s) < 1e-3, $"C[{i},{j}] = {c[i * n + j]}, expected {s}");
        }
    }

    [Property(MaxTest = 25)]
    public bool BatchedTransposedEqualsPlain(bool transposeA, bool transposeB, bool sharedB, int seed)
    {
        var rng = new Random(seed);
        int batch = rng.Next(1, 4), m = rng.Next(1, 6), k = rng.Next(1, 7), n = rng.Next(1, 6);
        var a = GradCheck.Random(rng, 1, transposeA ? [batch, k, m] : [batch, m, k]);
        var b = GradCheck.Random(rng, 1, sharedB ? (transposeB ? [n, k] : [k, n]) : (transposeB ? [batch, n, k] : [batch, k, n]));
        var c = Op.MatMul(a, b, transposeA, transposeB);
        for (int s = 0; s < batch; s++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (int p = 0; p < k; p++)
                    {
                        float x = transposeA ? a.Data[s * k * m + p * m + i] : a.Data[s * m * k + i * k + p];
                        int bBase = sharedB ? 0 : s * k * n;
                        float y = transposeB ? b.Data[bBase + j * k + p] : b.Data[bBase + p * n + j];
                        sum += x * y;
                    }
                    if (Math.Abs(sum - c.Data[s * m * n + i * n + j]) > 1e-4) return false;
                }
        return true;
    }
}
