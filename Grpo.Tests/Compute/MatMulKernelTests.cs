// The matmul kernels (Grpo/Compute/Kernels/MatMul*.cs) against the CPU reference Op.MatMul on ILGPU's
// CPU accelerator, at tiny shapes: v3 (the launcher's choice, layouts compiled in) and v2 (MatMulF4Kernel,
// Float4 loads, double-buffered shared memory) at shapes that allow them, crossing their edges; the
// launcher's fallback to v1; v1 forced at the same shapes; v2's PTX, which must hold the 16-byte loads it
// exists for; the decode-step kernels (skinny v1, rows v2) and split-K.
// KernelTests.cs holds the older cases, which now run v2 or v1 as the launcher picks.
using System.Text.RegularExpressions;
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;
using ILGPU;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class MatMulKernelTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Theory]
    [InlineData(1, 132, 20, 136, false, false, true, false)]  // A @ B: M, N past a 128 tile, K = 2.5 k-steps
    [InlineData(1, 132, 20, 136, false, true, true, false)]   // x @ W^T, the linear layer
    [InlineData(1, 136, 20, 132, true, false, true, false)]   // dW = dC^T @ x: A^T contiguous along M
    [InlineData(1, 132, 12, 136, true, true, true, true)]     // both transposed, accumulate
    [InlineData(2, 12, 16, 8, false, true, false, true)]      // batched B, accumulate
    [InlineData(3, 8, 20, 12, false, false, true, false)]     // batched, B shared
    [InlineData(2, 4, 7, 8, true, false, true, true)]         // K not a multiple of 4: allowed when A^T and B are contiguous along M, N
    [InlineData(1, 4, 4, 4, false, false, false, false)]      // a single k-step, under one tile
    public void VectorKernelMatchesReference(int batch, int m, int k, int n, bool transposeA, bool transposeB, bool sharedB, bool accumulate)
    {
        Assert.True(UsesVector(m, k, n, transposeA, transposeB));
        AssertMatchesReference(batch, m, k, n, transposeA, transposeB, sharedB, accumulate, v1Only: false);
        AssertMatchesReference(batch, m, k, n, transposeA, transposeB, sharedB, accumulate, v1Only: false, v2Only: true);
    }

    [Theory]
    [InlineData(1, 132, 20, 136, false, false, true, false)]  // A @ B past a tile
    [InlineData(1, 132, 20, 136, false, true, true, true)]    // x @ W^T, accumulate
    [InlineData(1, 136, 20, 132, true, false, true, false)]   // dW = dC^T @ x
    [InlineData(2, 12, 16, 8, true, true, false, true)]       // both transposed, batched B
    [InlineData(3, 8, 12, 12, false, false, true, false)]     // batched, B shared, K = 1.5 k-steps of v3
    [InlineData(1, 130, 36, 68, false, true, true, false)]    // K = 2.25 k-steps of v4, rows past 64 and past a tile
    public void LayoutKernelsMatchReference(int batch, int m, int k, int n, bool transposeA, bool transposeB, bool sharedB, bool accumulate)
    {
        var rng = new Random(batch * 1000 + m * 100 + k * 10 + n);
        var a = GradCheck.Random(rng, 1f, transposeA ? [batch, k, m] : [batch, m, k]);
        var bOne = transposeB ? new[] { n, k } : new[] { k, n };
        var b = GradCheck.Random(rng, 1f, sharedB ? bOne : [batch, .. bOne]);
        var start = GradCheck.Random(rng, 1f, batch, m, n);
        var product = Op.MatMul(a, b, transposeA, transposeB);
        var expected = accumulate ? Op.Add(product, start).Data : product.Data;
        using var aBuffer = device.UploadToPool<float>(a.Data);
        using var bBuffer = device.UploadToPool<float>(b.Data);
        using var cBuffer = device.UploadToPool<float>(accumulate ? start.Data : new float[start.Data.Length]);
        MatMulKernels.MatMulV3(device, aBuffer.View, transposeA, bBuffer.View, transposeB, cBuffer.View, batch, m, k, n, sharedB, accumulate);
        var c = new float[start.Data.Length];
        cBuffer.Download(c);
        KernelTests.AssertClose(expected, c, 1e-5f);

        cBuffer.Upload(accumulate ? start.Data : new float[start.Data.Length]);
        MatMulKernels.MatMulV4(device, aBuffer.View, transposeA, bBuffer.View, transposeB, cBuffer.View, batch, m, k, n, sharedB, accumulate);
        cBuffer.Download(c);
        KernelTests.AssertClose(expected, c, 1e-5f);
    }

    [Theory]
    [InlineData(1, 5, 7, 9, false, false)]    // K, N odd
    [InlineData(1, 8, 6, 8, false, true)]     // B^T contiguous along K = 6
    [InlineData(1, 6, 8, 8, true, false)]     // A^T contiguous along M = 6
    [InlineData(1, 130, 9, 129, true, true)]  // both odd, past a tile
    public void UnalignedShapesFallBackToV1AndMatchReference(int batch, int m, int k, int n, bool transposeA, bool transposeB)
    {
        Assert.False(UsesVector(m, k, n, transposeA, transposeB));
        AssertMatchesReference(batch, m, k, n, transposeA, transposeB, sharedB: false, accumulate: true, v1Only: false);
    }

    [Theory]
    [InlineData(1, 132, 20, 136, false, true)]
    [InlineData(2, 8, 12, 16, true, false)]
    public void V1ForcedMatchesReferenceAtVectorShapes(int batch, int m, int k, int n, bool transposeA, bool transposeB) =>
        AssertMatchesReference(batch, m, k, n, transposeA, transposeB, sharedB: false, accumulate: false, v1Only: true);

    [Fact]
    public void ViewsStartingOffAlignmentFallBackAndStillMatch()
    {
        // (4, 8) @ (8, 4): aligned shapes; A's view starts 2 floats (8 bytes) into its buffer -> v1;
        // 4 floats (16 bytes) in -> v2. Both must give the reference.
        const int m = 4, k = 8, n = 4;
        var rng = new Random(11);
        var a = GradCheck.Random(rng, 1f, m, k);
        var b = GradCheck.Random(rng, 1f, k, n);
        var expected = Op.MatMul(a, b).Data;
        foreach (var (offset, vector) in new[] { (2, false), (4, true) })
        {
            using var aBuffer = device.Pool.Rent<float>(offset + m * k);
            using var bBuffer = device.Pool.Rent<float>(k * n);
            using var cBuffer = device.Pool.Rent<float>(m * n);
            aBuffer.Upload(new float[offset].Concat(a.Data).ToArray());
            bBuffer.Upload(b.Data);
            ArrayView<float> aView = aBuffer.View.SubView(offset, m * k);
            Assert.Equal(vector, MatMulKernels.UsesVectorLoads(aView, false, bBuffer.View, false, m, k, n));
            MatMulKernels.MatMul(device, aView, false, bBuffer.View, false, cBuffer.View, 1, m, k, n, sharedB: true, accumulate: false);
            var c = new float[m * n];
            cBuffer.Download(c);
            KernelTests.AssertClose(expected, c, 1e-5f);
        }
    }

    [Fact]
    public void VectorKernelPtxHasSixteenByteLoadsAndARolledInnerLoop()
    {
        var method = typeof(MatMulKernels).GetMethod(nameof(MatMulKernels.MatMulF4Kernel))!;
        string ptx = PtxCompileTests.CompileToPtx(method);
        Assert.Matches(@"ld\.global\.v4\.f32", ptx);
        // One k-step reads 2 Float4 of A and 2 of B from shared memory; unrolled 8 times it would be 32.
        int sharedVectorReads = Regex.Matches(ptx, @"ld\.shared\.v4\.f32").Count;
        Assert.InRange(sharedVectorReads, 4, 8);
    }

    [Fact]
    public void BenchTimesTheLaunchersKernelAndEachVersion()
    {
        // `grpo bench --device cuda` shows the steps from v1 to v3 and v3's other layouts (n = 8 here, only the wiring).
        var figures = Grpo.Cli.GpuBench.Sgemm(device, n: 8, reps: 1).Select(f => (string)f["fig"]).ToList();
        Assert.Equal(["sgemm_fp32", "sgemm_fp32_v2", "sgemm_fp32_v1", "sgemm_fp32_v3", "sgemm_fp32_v3_nt", "sgemm_fp32_v3_tn", "sgemm_fp32_nt", "sgemm_fp32_v4_tn"], figures);
    }

    private bool UsesVector(int m, int k, int n, bool transposeA, bool transposeB)
    {
        using var aBuffer = device.Pool.Rent<float>(m * k);
        using var bBuffer = device.Pool.Rent<float>(k * n);
        return MatMulKernels.UsesVectorLoads(aBuffer.View, transposeA, bBuffer.View, transposeB, m, k, n);
    }

    [Theory]
    [InlineData(8, 40, 12, 4, false)]   // K cut in 4 equal chunks, vector loads
    [InlineData(8, 43, 12, 5, true)]    // 43 = 5 x 8 + 3: the last 3 rows of K run as a tail launch; accumulate
    [InlineData(6, 37, 9, 3, false)]    // odd sizes: v1 chunks
    public void SplitKMatchesReference(int m, int k, int n, int splits, bool accumulate)
    {
        // A weight gradient's layout: A^T B with A stored (k, m), B stored (k, n).
        var rng = new Random(m * 100 + k * 10 + n);
        var a = GradCheck.Random(rng, 1f, k, m);
        var b = GradCheck.Random(rng, 1f, k, n);
        var start = GradCheck.Random(rng, 1f, m, n);
        var product = Op.MatMul(a, b, transposeA: true);
        var expected = accumulate ? Op.Add(product, start).Data : product.Data;
        using var aBuffer = device.UploadToPool<float>(a.Data);
        using var bBuffer = device.UploadToPool<float>(b.Data);
        using var cBuffer = device.UploadToPool<float>(accumulate ? start.Data : new float[m * n]);
        MatMulKernels.MatMulSplitK(device, aBuffer.View, bBuffer.View, cBuffer.View, m, k, n, accumulate, splits);
        var c = new float[m * n];
        cBuffer.Download(c);
        KernelTests.AssertClose(expected, c, 1e-5f);
    }

    [Theory]
    [InlineData(1, 7, 5, false)]     // one row: a decode step of one sequence
    [InlineData(9, 40, 33, true)]    // rows past one warp's 8, K past one lane stride, accumulate
    [InlineData(16, 64, 12, false)]
    public void SkinnyKernelMatchesReference(int m, int k, int n, bool accumulate)
    {
        Assert.True(MatMulKernels.UsesSkinnyKernel(transposeA: false, transposeB: true, 1, m));
        AssertMatchesReference(1, m, k, n, false, true, sharedB: true, accumulate, v1Only: false);
    }

    [Theory]
    [InlineData(1, 20, 5, 1, false)]     // one row, one k-step and a partial one, under one tile of columns
    [InlineData(37, 52, 40, 1, true)]    // rows past 32 (the second A quad), columns past a 32-wide tile
    [InlineData(64, 260, 70, 3, false)]  // every row, K cut into 3 chunks of whole k-steps (96, 96, 68)
    [InlineData(9, 64, 33, 4, true)]     // four chunks of one k-step each, accumulate through the split sum
    public void RowsKernelMatchesReference(int m, int k, int n, int splits, bool accumulate)
    {
        var rng = new Random(m * 1000 + k + n);
        var a = GradCheck.Random(rng, 1f, m, k);
        var w = GradCheck.Random(rng, 1f, n, k);
        var start = GradCheck.Random(rng, 1f, m, n);
        var product = Op.MatMul(a, w, transposeB: true);
        var expected = accumulate ? Op.Add(product, start).Data : product.Data;
        using var aBuffer = device.UploadToPool<float>(a.Data);
        using var wBuffer = device.UploadToPool<float>(w.Data);
        using var cBuffer = device.UploadToPool<float>(accumulate ? start.Data : new float[m * n]);
        Assert.True(MatMulKernels.RowsKernelFits(aBuffer.View, wBuffer.View, m, k));
        MatMulKernels.MatMulRows(device, aBuffer.View, wBuffer.View, cBuffer.View, m, k, n, accumulate, splits);
        var c = new float[m * n];
        cBuffer.Download(c);
        KernelTests.AssertClose(expected, c, 1e-5f);
    }

    [Fact]
    public void TheRowsKernelTakesAtMost64RowsAndWholeQuadsOfK()
    {
        using var buffer = device.Pool.Rent<float>(4096);
        Assert.False(MatMulKernels.RowsKernelFits(buffer.View, buffer.View, 65, 32));
        Assert.False(MatMulKernels.RowsKernelFits(buffer.View, buffer.View, 8, 30));
        Assert.False(MatMulKernels.RowsKernelFits(buffer.View.SubView(1, 100), buffer.View, 8, 32));   // not 16-byte aligned
        // The test device has one multiprocessor: 2 groups wanted; 768 columns are 24 groups already.
        Assert.Equal(1, MatMulKernels.RowsSplitsFor(device, 768, 768));
        Assert.Equal(2, MatMulKernels.RowsSplitsFor(device, 768, 20));   // one group: split K in two
        Assert.Equal(1, MatMulKernels.RowsSplitsFor(device, 256, 20));   // K too short to pay for the second launch
    }

    [Fact]
    public void TheLauncherSplitsKOnlyForLongWeightGradientsWithFewTiles()
    {
        // The test device has one multiprocessor: a product of one tile "fills" half of it.
        Assert.Equal(1, MatMulKernels.SplitsFor(device, transposeA: true, transposeB: false, 1, 256, 8192, 256));   // 4 tiles >= 2
        Assert.Equal(2, MatMulKernels.SplitsFor(device, transposeA: true, transposeB: false, 1, 100, 8192, 100));   // 1 tile
        Assert.Equal(1, MatMulKernels.SplitsFor(device, transposeA: true, transposeB: false, 1, 100, 512, 100));    // K short
        Assert.Equal(1, MatMulKernels.SplitsFor(device, transposeA: false, transposeB: false, 1, 100, 8192, 100));  // A not transposed
        Assert.Equal(1, MatMulKernels.SplitsFor(device, transposeA: true, transposeB: false, 3, 100, 8192, 100));   // batched
    }

    /// <summary>C starts random when accumulating; B is (k, n) once when shared, else batch of them.</summary>
    private void AssertMatchesReference(int batch, int m, int k, int n, bool transposeA, bool transposeB, bool sharedB,
        bool accumulate, bool v1Only, bool v2Only = false)
    {
        var rng = new Random(batch * 1000 + m * 100 + k * 10 + n);
        var a = GradCheck.Random(rng, 1f, transposeA ? [batch, k, m] : [batch, m, k]);
        var bOne = transposeB ? new[] { n, k } : new[] { k, n };
        var b = GradCheck.Random(rng, 1f, sharedB ? bOne : [batch, .. bOne]);
        var start = GradCheck.Random(rng, 1f, batch, m, n);
        var product = Op.MatMul(a, b, transposeA, transposeB);
        var expected = accumulate ? Op.Add(product, start).Data : product.Data;

        using var aBuffer = device.Pool.Rent<float>(a.Data.Length);
        using var bBuffer = device.Pool.Rent<float>(b.Data.Length);
        using var cBuffer = device.Pool.Rent<float>(start.Data.Length);
        aBuffer.Upload(a.Data);
        bBuffer.Upload(b.Data);
        cBuffer.Upload(accumulate ? start.Data : new float[start.Data.Length]);
        if (v2Only)
            MatMulKernels.MatMulV2(device, aBuffer.View, transposeA, bBuffer.View, transposeB, cBuffer.View, batch, m, k, n, sharedB, accumulate);
        else if (v1Only)
            MatMulKernels.MatMulV1(device, aBuffer.View, transposeA, bBuffer.View, transposeB, cBuffer.View, batch, m, k, n, sharedB, accumulate);
        else
            MatMulKernels.MatMul(device, aBuffer.View, transposeA, bBuffer.View, transposeB, cBuffer.View, batch, m, k, n, sharedB, accumulate);
        var c = new float[start.Data.Length];
        cBuffer.Download(c);
        KernelTests.AssertClose(expected, c, 1e-5f);
    }
}
