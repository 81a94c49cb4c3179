// The CPU matrix product that every matmul on the CPU ends in: C (M, N) += A (M, K) * B (K, N),
// all row-major and contiguous; A may instead be stored transposed, (K, M), and is then read in place.
// Ops/MatMul.cs arranges transposes and batches around it.
//
// Speed comes from three habits of BLAS kernels, kept readable:
// - a register tile: 8 rows x 32 columns of C live in sixteen Vector512 accumulators while k runs,
//   so each loaded vector of B is used 8 times and each broadcast of A twice; sixteen independent
//   sums keep both FMA pipes busy through the FMA's latency (a 4 x 32 tile, eight sums, reached
//   135-200 GFLOP/s on one core of this machine, the 8 x 32 tile 225-250, near its peak);
// - blocking over K (KBlock rows of B at a time) so the slice of B being reused stays in cache;
// - Parallel.For over blocks of rows of C (no two threads write the same row).
// Where Vector512 is not accelerated, rows fall back to TensorPrimitives (SIMD of whatever width the
// machine has). Edges (rows past a multiple of 8, columns past a multiple of 32) take the same path.
// Benchmark: `grpo bench --device cpu` (cpu_sgemm). Tests: Grpo.Tests/MatMulTests.cs.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Grpo.Compute;

public static class CpuGemm
{
    private const int KBlock = 256;
    private const int RowsPerTask = 16;

    /// <summary>C += A * B (or C = A * B when accumulate is false). A: (M, K), B: (K, N), C: (M, N).</summary>
    public static void Multiply(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n, bool accumulate) =>
        Multiply(a, transposeA: false, b, c, m, k, n, accumulate);

    /// <summary>C (+)= op(A) * B, where op(A) is (M, K): A itself, or with transposeA A stored (K, M).</summary>
    public static void Multiply(ReadOnlySpan<float> a, bool transposeA, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n, bool accumulate)
    {
        if (!accumulate) c[..(m * n)].Clear();
        if (m == 0 || n == 0 || k == 0) return;
        if (a.Length < m * k || b.Length < k * n || c.Length < m * n) throw new ArgumentException("CpuGemm.Multiply: an operand is shorter than its shape");
        var strides = transposeA ? new Strides(1, m) : new Strides(k, 1);
        unsafe
        {
            fixed (float* pa = a, pb = b, pc = c)
            {
                float* A = pa, B = pb, C = pc;
                long flops = 2L * m * n * k;
                int tasks = (m + RowsPerTask - 1) / RowsPerTask;
                if (flops < 1 << 18 || tasks == 1)
                    for (int t = 0; t < tasks; t++) RowBlock(A, strides, B, C, m, k, n, t);
                else
                    Parallel.For(0, tasks, t => RowBlock(A, strides, B, C, m, k, n, t));
            }
        }
    }

    /// <summary>Where A's element (i, p) lives: i * Row + p * Column.</summary>
    private readonly record struct Strides(long Row, long Column);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void RowBlock(float* a, Strides aStrides, float* b, float* c, int m, int k, int n, int task)
    {
        int rowStart = task * RowsPerTask, rowEnd = Math.Min(m, rowStart + RowsPerTask);
        for (int k0 = 0; k0 < k; k0 += KBlock)
        {
            int k1 = Math.Min(k, k0 + KBlock);
            int i = rowStart;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; i + 8 <= rowEnd; i += 8)
                {
                    int j = 0;
                    for (; j + 32 <= n; j += 32) Tile8x32(a, aStrides, b, c, n, i, j, k0, k1);
                    if (j < n) for (int r = i; r < i + 8; r++) RowAxpy(a, aStrides, b, c, n, r, j, k0, k1);
                }
            }
            for (; i < rowEnd; i++) RowAxpy(a, aStrides, b, c, n, i, 0, k0, k1);
        }
    }

    /// <summary>C[i..i+8, j..j+32] += A[i..i+8, k0..k1] * B[k0..k1, j..j+32]: accumulators r0 and r1 hold row i + r.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Tile8x32(float* a, Strides aStrides, float* b, float* c, int n, int i, int j, int k0, int k1)
    {
        float* c0 = c + (long)i * n + j;
        var acc00 = Vector512.Load(c0);         var acc01 = Vector512.Load(c0 + 16);
        var acc10 = Vector512.Load(c0 + n);     var acc11 = Vector512.Load(c0 + n + 16);
        var acc20 = Vector512.Load(c0 + 2 * n); var acc21 = Vector512.Load(c0 + 2 * n + 16);
        var acc30 = Vector512.Load(c0 + 3 * n); var acc31 = Vector512.Load(c0 + 3 * n + 16);
        var acc40 = Vector512.Load(c0 + 4 * n); var acc41 = Vector512.Load(c0 + 4 * n + 16);
        var acc50 = Vector512.Load(c0 + 5 * n); var acc51 = Vector512.Load(c0 + 5 * n + 16);
        var acc60 = Vector512.Load(c0 + 6 * n); var acc61 = Vector512.Load(c0 + 6 * n + 16);
        var acc70 = Vector512.Load(c0 + 7 * n); var acc71 = Vector512.Load(c0 + 7 * n + 16);
        long rowStride = aStrides.Row, columnStride = aStrides.Column;
        float* aColumn = a + i * rowStride + k0 * columnStride;   // A[i, p]; A[i + r, p] is r rows further
        for (int p = k0; p < k1; p++, aColumn += columnStride)
        {
            float* bRow = b + (long)p * n + j;
            var b0 = Vector512.Load(bRow);
            var b1 = Vector512.Load(bRow + 16);
            var x = Vector512.Create(aColumn[0]);         acc00 = Vector512.FusedMultiplyAdd(x, b0, acc00); acc01 = Vector512.FusedMultiplyAdd(x, b1, acc01);
            x = Vector512.Create(aColumn[rowStride]);     acc10 = Vector512.FusedMultiplyAdd(x, b0, acc10); acc11 = Vector512.FusedMultiplyAdd(x, b1, acc11);
            x = Vector512.Create(aColumn[2 * rowStride]); acc20 = Vector512.FusedMultiplyAdd(x, b0, acc20); acc21 = Vector512.FusedMultiplyAdd(x, b1, acc21);
            x = Vector512.Create(aColumn[3 * rowStride]); acc30 = Vector512.FusedMultiplyAdd(x, b0, acc30); acc31 = Vector512.FusedMultiplyAdd(x, b1, acc31);
            x = Vector512.Create(aColumn[4 * rowStride]); acc40 = Vector512.FusedMultiplyAdd(x, b0, acc40); acc41 = Vector512.FusedMultiplyAdd(x, b1, acc41);
            x = Vector512.Create(aColumn[5 * rowStride]); acc50 = Vector512.FusedMultiplyAdd(x, b0, acc50); acc51 = Vector512.FusedMultiplyAdd(x, b1, acc51);
            x = Vector512.Create(aColumn[6 * rowStride]); acc60 = Vector512.FusedMultiplyAdd(x, b0, acc60); acc61 = Vector512.FusedMultiplyAdd(x, b1, acc61);
            x = Vector512.Create(aColumn[7 * rowStride]); acc70 = Vector512.FusedMultiplyAdd(x, b0, acc70); acc71 = Vector512.FusedMultiplyAdd(x, b1, acc71);
        }
        acc00.Store(c0);         acc01.Store(c0 + 16);
        acc10.Store(c0 + n);     acc11.Store(c0 + n + 16);
        acc20.Store(c0 + 2 * n); acc21.Store(c0 + 2 * n + 16);
        acc30.Store(c0 + 3 * n); acc31.Store(c0 + 3 * n + 16);
        acc40.Store(c0 + 4 * n); acc41.Store(c0 + 4 * n + 16);
        acc50.Store(c0 + 5 * n); acc51.Store(c0 + 5 * n + 16);
        acc60.Store(c0 + 6 * n); acc61.Store(c0 + 6 * n + 16);
        acc70.Store(c0 + 7 * n); acc71.Store(c0 + 7 * n + 16);
    }

    /// <summary>C[i, j..] += sum over p of A[i, p] * B[p, j..]: one row, SIMD through TensorPrimitives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void RowAxpy(float* a, Strides aStrides, float* b, float* c, int n, int i, int j, int k0, int k1)
    {
        int width = n - j;
        var cRow = new Span<float>(c + (long)i * n + j, width);
        for (int p = k0; p < k1; p++)
        {
            float x = a[i * aStrides.Row + p * aStrides.Column];
            var bRow = new ReadOnlySpan<float>(b + (long)p * n + j, width);
            TensorPrimitives.MultiplyAdd(bRow, x, cRow, cRow);
        }
    }

    /// <summary>dst (cols, rows) = transpose of src (rows, cols).</summary>
    /// <remarks>Tile by tile, each tile written row after row of dst: writing down a column of dst instead
    /// (rows floats apart, 4 KB when rows is 1024) made every write of a tile land in the same cache set,
    /// and a 1024 x 384 transpose took 2.1 ms instead of 0.17.</remarks>
    public static void Transpose(ReadOnlySpan<float> src, Span<float> dst, int rows, int cols)
    {
        const int tile = 16;
        for (int i0 = 0; i0 < rows; i0 += tile)
            for (int j0 = 0; j0 < cols; j0 += tile)
            {
                int i1 = Math.Min(rows, i0 + tile), j1 = Math.Min(cols, j0 + tile);
                for (int j = j0; j < j1; j++)
                    for (int i = i0; i < i1; i++)
                        dst[j * rows + i] = src[i * cols + j];
            }
    }
}
