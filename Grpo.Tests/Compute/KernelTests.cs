// The ILGPU kernels against the CPU reference (Grpo.Ops, the spec), run on ILGPU's CPU accelerator
// at tiny shapes: every simulated GPU thread is an OS thread, so a 128 x 128 tile of 256 threads is
// slow but exact in what it computes. Shapes cross the matmul's edges: M, N past one 128 tile,
// K past one or two k-steps of 8, and sizes under one tile in every direction.
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Compute;
using Grpo.Ops;

namespace Grpo.Tests.Compute;

/// <summary>One CPU accelerator for all kernel tests (building a context costs tens of ms, and its threads are many).</summary>
public sealed class CpuAcceleratorFixture : IDisposable
{
    public Device Device { get; } = Device.CreateCpuAccelerator();
    public void Dispose() => Device.Dispose();
}

[CollectionDefinition("cpu-accelerator")]
public class CpuAcceleratorCollection : ICollectionFixture<CpuAcceleratorFixture>;

[Collection("cpu-accelerator")]
public class KernelTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Fact]
    public void MatMulByHand()
    {
        // [1 2; 3 4] @ [5 6; 7 8] = [1*5+2*7, 1*6+2*8; 3*5+4*7, 3*6+4*8] = [19 22; 43 50]
        var c = new float[4];
        device.MatMul([1, 2, 3, 4], false, [5, 6, 7, 8], false, c, 1, 2, 2, 2);
        Assert.Equal([19f, 22, 43, 50], c);
        // accumulate adds: [1 1; 1 1] + [1 0; 0 1] @ [5 6; 7 8] = [6 7; 8 9]
        var acc = new float[] { 1, 1, 1, 1 };
        device.MatMul([1, 0, 0, 1], false, [5, 6, 7, 8], false, acc, 1, 2, 2, 2, accumulate: true);
        Assert.Equal([6f, 7, 8, 9], acc);
    }

    [Theory]
    [InlineData(1, 5, 7, 9, false, false)]
    [InlineData(1, 5, 7, 9, true, false)]
    [InlineData(1, 5, 7, 9, false, true)]
    [InlineData(1, 5, 7, 9, true, true)]
    [InlineData(3, 4, 17, 6, false, true)]   // batched B, K past two k-steps
    [InlineData(2, 6, 3, 5, true, true)]     // batched, both transposed
    [InlineData(1, 129, 9, 130, false, false)] // M and N one past a 128 tile, K one past a k-step
    [InlineData(1, 130, 8, 129, true, true)]
    public void MatMulMatchesReference(int batch, int m, int k, int n, bool transposeA, bool transposeB)
    {
        var rng = new Random(batch * 1000 + m * 100 + k * 10 + n);
        var a = GradCheck.Random(rng, 1f, transposeA ? [batch, k, m] : [batch, m, k]);
        var b = GradCheck.Random(rng, 1f, transposeB ? [batch, n, k] : [batch, k, n]);
        var expected = Op.MatMul(a, b, transposeA, transposeB).Data;
        var c = new float[batch * m * n];
        device.MatMul(a.Data, transposeA, b.Data, transposeB, c, batch, m, k, n);
        AssertClose(expected, c, 1e-5f);
    }

    [Fact]
    public void MatMulWithSharedBAndAccumulate()
    {
        // The linear layer's shape: x (batch, T, in) @ W^T with W (out, in) shared; C starts non-zero.
        var rng = new Random(7);
        var x = GradCheck.Random(rng, 1f, 3, 5, 6);
        var w = GradCheck.Random(rng, 1f, 4, 6);
        var start = GradCheck.Random(rng, 1f, 3, 5, 4);
        var expected = Op.Add(Op.MatMul(x, w, transposeB: true), start).Data;
        var c = (float[])start.Data.Clone();
        device.MatMul(x.Data, false, w.Data, true, c, 3, 5, 6, 4, accumulate: true);
        AssertClose(expected, c, 1e-5f);
    }

    /// <summary>Law: for any small shape and transposes the kernel equals the reference.</summary>
    [Property(MaxTest = 8)]
    public bool MatMulMatchesReferenceAtRandomShapes(PositiveInt m0, PositiveInt k0, PositiveInt n0, bool transposeA, bool transposeB, int seed)
    {
        int m = m0.Get % 12 + 1, k = k0.Get % 20 + 1, n = n0.Get % 12 + 1;
        var rng = new Random(seed);
        var a = GradCheck.Random(rng, 1f, transposeA ? [k, m] : [m, k]);
        var b = GradCheck.Random(rng, 1f, transposeB ? [n, k] : [k, n]);
        var expected = Op.MatMul(a, b, transposeA, transposeB).Data;
        var c = new float[m * n];
        device.MatMul(a.Data, transposeA, b.Data, transposeB, c, 1, m, k, n);
        return expected.Zip(c).All(p => Math.Abs(p.First - p.Second) <= 1e-5f * (1 + Math.Abs(p.First)));
    }

    [Fact]
    public void ElementwiseByHand()
    {
        // add with a bias of 2 repeated over 2 rows: [1 2; 3 4] + [10 20] = [11 22; 13 24]
        var y = new float[4];
        device.Add([1, 2, 3, 4], [10, 20], y);
        Assert.Equal([11f, 22, 13, 24], y);
        // mul by a repeated weight: [1 2; 3 4] * [2 -1] = [2 -2; 6 -4]
        device.Mul([1, 2, 3, 4], [2, -1], y);
        Assert.Equal([2f, -2, 6, -4], y);
        // scale by 0.5: [0.5 1 1.5 2]
        device.Scale([1, 2, 3, 4], 0.5f, y);
        Assert.Equal([0.5f, 1, 1.5f, 2], y);
        // exp(0) = 1, exp(ln 2) = 2, exp(-ln 4) = 0.25, exp(1) = e
        device.Exp([0, MathF.Log(2), -MathF.Log(4), 1], y);
        AssertClose([1f, 2, 0.25f, MathF.E], y, 1e-6f);
    }

    [Theory]
    [InlineData(37, 37)]
    [InlineData(35, 7)]
    [InlineData(1000, 10)]
    public void ElementwiseMatchesReference(int size, int bSize)
    {
        var rng = new Random(size);
        var a = GradCheck.Random(rng, 3f, size);
        var b = GradCheck.Random(rng, 3f, bSize);
        var aRows = new Tensor(a.Data, size / bSize, bSize);
        var y = new float[size];
        device.Add(a.Data, b.Data, y);
        AssertClose(Op.Add(aRows, b).Data, y, 0f);
        device.Mul(a.Data, b.Data, y);
        AssertClose(Op.Mul(aRows, b).Data, y, 0f);
        device.Scale(a.Data, -1.5f, y);
        AssertClose(Op.Scale(a, -1.5f).Data, y, 0f);
        device.Exp(a.Data, y);
        AssertClose(Op.Exp(a).Data, y, 1e-6f);
    }

    [Fact]
    public void BadSizesThrowOnTheHostBeforeAnyKernelRuns()
    {
        Assert.Throws<ArgumentException>(() => device.Add(new float[6], new float[4], new float[6]));
        Assert.Throws<ArgumentException>(() => device.MatMul(new float[6], false, new float[6], false, new float[4], 1, 2, 3, 3));
    }

    /// <summary>|expected - actual| <= tolerance * (1 + |expected|) at every element.</summary>
    internal static void AssertClose(float[] expected, float[] actual, float tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * (1 + Math.Abs(expected[i])),
                $"element {i}: expected {expected[i]}, got {actual[i]}");
    }
}
