// The matmul launcher's two shapes where 128 x 128 tiles leave the GPU idle (MatMulKernels.cs has the
// tiled kernels, the launcher and the history of versions):
//   skinny   C (M, N) (+)= A (M, K) @ B^T for few rows M (a decode step: one new token a sequence):
//            v1 MatMulSkinnyKernel: a warp per 8 rows x 1 column, lanes along K, shuffles to sum; it
//            reads each weight row once per 8 rows: at the mid shape (64 rows, width 768, vocab 32000)
//            a decode step's 84 products took about 6 ms, 8 times the weights' bytes;
//            v2 MatMulRowsKernel (M <= 64): a group per 32 columns x all 64 rows, the weight read once,
//            K walked 16 at a time through shared memory, each thread 4 rows x 4 columns; when that
//            gives fewer groups than two a multiprocessor, K is also split across groups (partial
//            products summed by ReduceKernels.SumAxis, in a fixed order; only from K = 512, as the second
//            launch cost more than it saved at the small shape's K = 256). Measured on the H200, mid
//            shape: sampling 4.3k -> 10.7k new tokens/s (the decode products 6 ms -> about 1.8 ms a step);
//   split-K  C (m, n) (+)= A^T B with few output tiles and a long K (every weight gradient: K is the
//            batch's tokens): K cut into chunks run as the batch of one tiled launch, then summed.
// Tests: Grpo.Tests/Compute/MatMulKernelTests.cs (against the CPU reference on ILGPU's CPU accelerator),
// PtxCompileTests.cs; `grpo check --device cuda` (the decode and weight-gradient cases).
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static partial class MatMulKernels
{
    /// <summary>Rows of C one warp of the skinny kernel computes, and warps a group.</summary>
    public const int SkinnyRows = 8, SkinnyWarps = 4;

    /// <summary>
    /// C (M, N) (+)= A (M, K) @ B^T, B stored (N, K), for few rows M (sampling: one new token a sequence).
    /// One warp per (block of SkinnyRows rows, column j): the lanes stride along K, so each load of the
    /// row of B (a weight's row) and of the rows of A is 32 consecutive floats, and the warp adds its
    /// lanes' partial sums with shuffles. The tiled kernels give such a product 1 to 6 groups, each
    /// walking K 8 at a time (measured on the H200: ~100 us for 64 x 256 @ 256 x 768^T).
    /// </summary>
    public static void MatMulSkinnyKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int m, int k, int n, int accumulate)
    {
        int rowBlocks = (m + SkinnyRows - 1) / SkinnyRows;
        int warp = Grid.IdxX * SkinnyWarps + Warp.WarpIdx;
        if (warp >= rowBlocks * n) return;   // the whole warp leaves together
        int column = warp / rowBlocks, row0 = warp % rowBlocks * SkinnyRows;
        long bAt = (long)column * k;
        // Rows past M read row M - 1 (any valid row) and are not written.
        long a0 = (long)XMath.Min(row0, m - 1) * k, a1 = (long)XMath.Min(row0 + 1, m - 1) * k;
        long a2 = (long)XMath.Min(row0 + 2, m - 1) * k, a3 = (long)XMath.Min(row0 + 3, m - 1) * k;
        long a4 = (long)XMath.Min(row0 + 4, m - 1) * k, a5 = (long)XMath.Min(row0 + 5, m - 1) * k;
        long a6 = (long)XMath.Min(row0 + 6, m - 1) * k, a7 = (long)XMath.Min(row0 + 7, m - 1) * k;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (int kk = Warp.LaneIdx; kk < k; kk += Warp.WarpSize)
        {
            float w = b[bAt + kk];
            s0 += a[a0 + kk] * w; s1 += a[a1 + kk] * w; s2 += a[a2 + kk] * w; s3 += a[a3 + kk] * w;
            s4 += a[a4 + kk] * w; s5 += a[a5 + kk] * w; s6 += a[a6 + kk] * w; s7 += a[a7 + kk] * w;
        }
        for (int delta = Warp.WarpSize / 2; delta > 0; delta /= 2)
        {
            s0 += Warp.ShuffleXor(s0, delta); s1 += Warp.ShuffleXor(s1, delta);
            s2 += Warp.ShuffleXor(s2, delta); s3 += Warp.ShuffleXor(s3, delta);
            s4 += Warp.ShuffleXor(s4, delta); s5 += Warp.ShuffleXor(s5, delta);
            s6 += Warp.ShuffleXor(s6, delta); s7 += Warp.ShuffleXor(s7, delta);
        }
        if (Warp.LaneIdx != 0) return;
        StoreSkinny(c, row0, m, n, column, s0, accumulate); StoreSkinny(c, row0 + 1, m, n, column, s1, accumulate);
        StoreSkinny(c, row0 + 2, m, n, column, s2, accumulate); StoreSkinny(c, row0 + 3, m, n, column, s3, accumulate);
        StoreSkinny(c, row0 + 4, m, n, column, s4, accumulate); StoreSkinny(c, row0 + 5, m, n, column, s5, accumulate);
        StoreSkinny(c, row0 + 6, m, n, column, s6, accumulate); StoreSkinny(c, row0 + 7, m, n, column, s7, accumulate);
    }

    /// <summary>Columns, rows and k-step of one group of the rows kernel (v2), and its threads.</summary>
    public const int RowsTileColumns = 32, RowsTileRows = 64, RowsKStep = 16, RowsThreads = 128;
    private const int RowsQuadStride = RowsKStep / 4 + 1;   // a shared row: 4 quads of k and one of padding

    /// <summary>
    /// v2 (M <= 64, K a multiple of 4, 16-byte aligned views): C (or the partial product of split
    /// Grid.IdxY) (M, N) (+)= A (M, K) @ B^T over k in [Grid.IdxY * kPerSplit, + kPerSplit).
    /// Thread (tx, ty) = (thread % 8, thread / 8) owns rows 4 ty + i and columns tx + 8 j (i, j < 4): the
    /// strided columns put a quarter-warp's eight B reads in eight different bank groups (rows of 20
    /// floats), and its A reads are one address (a broadcast). The next k-step's loads are issued
    /// before the current one is multiplied. Rows past M read row M - 1 and are not written.
    /// </summary>
    public static void MatMulRowsKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int m, int k, int n,
        int kPerSplit, int accumulate)
    {
        var aTile = SharedMemory.Allocate<Float4>(RowsTileRows * RowsQuadStride);
        var bTile = SharedMemory.Allocate<Float4>(RowsTileColumns * RowsQuadStride);
        var a4 = a.Cast<Float4>();
        var b4 = b.Cast<Float4>();
        int thread = Group.IdxX, tx = thread % 8, ty = thread / 8;
        int colBase = Grid.IdxX * RowsTileColumns;
        int kStart = Grid.IdxY * kPerSplit, kEnd = XMath.Min(k, kStart + kPerSplit);
        // This thread's loads: two quads of A (rows aRow and aRow + 32) and one of B, at quad aQuad of the k-step.
        int aRow = thread / 4, quad = thread % 4;
        long aAt0 = (long)XMath.Min(aRow, m - 1) * k, aAt1 = (long)XMath.Min(aRow + 32, m - 1) * k;
        int bColumn = colBase + thread / 4;
        long bAt = (long)XMath.Min(bColumn, n - 1) * k;

        var acc = default(Block4x4);
        var next = LoadRowsStep(a4, b4, aAt0, aAt1, bAt, kStart + 4 * quad, kEnd);
        for (int k0 = kStart; k0 < kEnd; k0 += RowsKStep)
        {
            aTile[aRow * RowsQuadStride + quad] = next.A0;
            aTile[(aRow + 32) * RowsQuadStride + quad] = next.A1;
            bTile[(thread / 4) * RowsQuadStride + quad] = next.B;
            Group.Barrier();
            if (k0 + RowsKStep < kEnd) next = LoadRowsStep(a4, b4, aAt0, aAt1, bAt, k0 + RowsKStep + 4 * quad, kEnd);
            for (int q = 0; q < RowsKStep / 4; q++)
            {
                var a0 = aTile[(4 * ty) * RowsQuadStride + q];
                var a1 = aTile[(4 * ty + 1) * RowsQuadStride + q];
                var a2 = aTile[(4 * ty + 2) * RowsQuadStride + q];
                var a3 = aTile[(4 * ty + 3) * RowsQuadStride + q];
                acc = acc.Add(a0, a1, a2, a3,
                    bTile[tx * RowsQuadStride + q], bTile[(tx + 8) * RowsQuadStride + q],
                    bTile[(tx + 16) * RowsQuadStride + q], bTile[(tx + 24) * RowsQuadStride + q]);
            }
            Group.Barrier();
        }
        long cBase = (long)Grid.IdxY * m * n;
        StoreRow(c, cBase, 4 * ty, m, n, colBase + tx, acc.R0, accumulate);
        StoreRow(c, cBase, 4 * ty + 1, m, n, colBase + tx, acc.R1, accumulate);
        StoreRow(c, cBase, 4 * ty + 2, m, n, colBase + tx, acc.R2, accumulate);
        StoreRow(c, cBase, 4 * ty + 3, m, n, colBase + tx, acc.R3, accumulate);
    }

    private struct RowsStep
    {
        public Float4 A0, A1, B;
    }

    /// <summary>One thread's quads of a k-step at k (zeros past kEnd; K is a multiple of 4, so a quad is all in or all out).</summary>
    private static RowsStep LoadRowsStep(ArrayView<Float4> a4, ArrayView<Float4> b4, long aAt0, long aAt1, long bAt, int k, int kEnd)
    {
        if (k >= kEnd) return default;
        return new RowsStep { A0 = a4[(aAt0 + k) / 4], A1 = a4[(aAt1 + k) / 4], B = b4[(bAt + k) / 4] };
    }

    /// <summary>Sixteen sums: rows R0..R3, each over the columns tx, tx + 8, tx + 16, tx + 24.</summary>
    internal struct Block4x4
    {
        public Float4 R0, R1, R2, R3;

        public readonly Block4x4 Add(Float4 a0, Float4 a1, Float4 a2, Float4 a3, Float4 b0, Float4 b1, Float4 b2, Float4 b3) => new()
        {
            R0 = Row(R0, a0, b0, b1, b2, b3), R1 = Row(R1, a1, b0, b1, b2, b3),
            R2 = Row(R2, a2, b0, b1, b2, b3), R3 = Row(R3, a3, b0, b1, b2, b3),
        };

        private static Float4 Row(Float4 acc, Float4 a, Float4 b0, Float4 b1, Float4 b2, Float4 b3) => new()
        {
            X = acc.X + a.X * b0.X + a.Y * b0.Y + a.Z * b0.Z + a.W * b0.W,
            Y = acc.Y + a.X * b1.X + a.Y * b1.Y + a.Z * b1.Z + a.W * b1.W,
            Z = acc.Z + a.X * b2.X + a.Y * b2.Y + a.Z * b2.Z + a.W * b2.W,
            W = acc.W + a.X * b3.X + a.Y * b3.Y + a.Z * b3.Z + a.W * b3.W,
        };
    }

    private static void StoreRow(ArrayView<float> c, long cBase, int row, int m, int n, int column, Float4 sums, int accumulate)
    {
        if (row >= m) return;
        StoreRowsOutput(c, cBase, row, n, column, sums.X, accumulate);
        StoreRowsOutput(c, cBase, row, n, column + 8, sums.Y, accumulate);
        StoreRowsOutput(c, cBase, row, n, column + 16, sums.Z, accumulate);
        StoreRowsOutput(c, cBase, row, n, column + 24, sums.W, accumulate);
    }

    private static void StoreRowsOutput(ArrayView<float> c, long cBase, int row, int n, int column, float value, int accumulate)
    {
        if (column >= n) return;
        long at = cBase + (long)row * n + column;
        if (accumulate != 0) c[at] += value;
        else c[at] = value;
    }

    /// <summary>Whether the launcher takes v2 of the skinny product: at most 64 rows, and Float4 loads allowed.</summary>
    public static bool RowsKernelFits(ArrayView<float> a, ArrayView<float> b, int m, int k) =>
        m <= RowsTileRows && k % 4 == 0 && StartsAligned(a) && StartsAligned(b);

    /// <summary>How many chunks v2 cuts K into: enough groups for two a multiprocessor, chunks of at least 128, K at least 512.</summary>
    public static int RowsSplitsFor(Device device, int k, int n)
    {
        long groups = (n + RowsTileColumns - 1) / RowsTileColumns;
        long wanted = 2L * device.Accelerator.NumMultiprocessors;
        // A split costs a second launch (the sum): at the small shape (K = 256) that cost more than it saved.
        if (groups >= wanted || k < 512) return 1;
        return (int)Math.Max(1, Math.Min((wanted + groups - 1) / groups, k / 128));
    }

    /// <summary>v2 of the skinny product, split along K into splits chunks (1: written straight into C).</summary>
    public static void MatMulRows(Device device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int m, int k, int n,
        bool accumulate, int splits)
    {
        if (m == 0 || n == 0) return;
        if (!RowsKernelFits(a, b, m, k)) throw new ArgumentException($"matmul rows kernel: ({m}, {k}) rows need m <= {RowsTileRows}, K a multiple of 4 and aligned views");
        splits = Math.Clamp(splits, 1, Math.Max(1, k / RowsKStep));
        // Chunks are whole k-steps, so only the last chunk ends before its k-step does.
        int chunk = ((k + splits - 1) / splits + RowsKStep - 1) / RowsKStep * RowsKStep;
        splits = (k + chunk - 1) / chunk;
        var kernel = device.Kernels.Get("matmul_rows", acc =>
            acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int>(MatMulRowsKernel));
        var grid = new Index2D((n + RowsTileColumns - 1) / RowsTileColumns, splits);
        var config = new KernelConfig(grid, new Index2D(RowsThreads, 1));
        if (splits == 1)
        {
            kernel(config, a, b, c, m, k, n, chunk, accumulate ? 1 : 0);
            return;
        }
        using var partial = device.Pool.Rent<float>((long)splits * m * n);   // (splits, m, n)
        kernel(config, a, b, partial.View, m, k, n, chunk, 0);
        ReduceKernels.SumAxis(device, partial.View, c, 1, splits, m * n, 1f, accumulate);
    }

    private static void StoreSkinny(ArrayView<float> c, int row, int m, int n, int column, float value, int accumulate)
    {
        if (row >= m) return;
        long at = (long)row * n + column;
        if (accumulate != 0) c[at] += value;
        else c[at] = value;
    }

    /// <summary>Whether the launcher takes the skinny kernel: x @ W^T (B transposed, A not), one product, few rows.</summary>
    public static bool UsesSkinnyKernel(bool transposeA, bool transposeB, int batch, int m) =>
        batch == 1 && !transposeA && transposeB && m <= 128;

    private static void LaunchSkinny(Device device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int m, int k, int n, bool accumulate)
    {
        if (RowsKernelFits(a, b, m, k))
        {
            MatMulRows(device, a, b, c, m, k, n, accumulate, RowsSplitsFor(device, k, n));
            return;
        }
        LaunchSkinnyV1(device, a, b, c, m, k, n, accumulate);
    }

    /// <summary>v1 of the skinny product whatever the shape (the bench's comparison, tests).</summary>
    public static void LaunchSkinnyV1(Device device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int m, int k, int n, bool accumulate)
    {
        long warps = (long)((m + SkinnyRows - 1) / SkinnyRows) * n;
        int groups = (int)((warps + SkinnyWarps - 1) / SkinnyWarps);
        var config = new KernelConfig(new Index1D(groups), new Index1D(SkinnyWarps * 32));
        device.Kernels.Get("matmul_skinny", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(MatMulSkinnyKernel))
            (config, a, b, c, m, k, n, accumulate ? 1 : 0);
    }

    /// <summary>
    /// Split-K (v3, for one shape): a weight gradient dW = dY^T X has few output tiles (a 256 x 256 weight is
    /// 4 of them) and a K of thousands (every token of the batch), so the few groups that exist each walk
    /// all of K while most SMs idle: measured on the H200, such products took most of a training step's
    /// matmul time. When A is transposed and B is not, both are stored (K, .), so a chunk of K is a
    /// contiguous block of each: the chunks run as the batch of one launch into partial products, and
    /// ReduceKernels.SumAxis adds them up (in a fixed order: the same bits every run).
    /// Returns how many chunks to cut K into: 1 (no split) unless the output has fewer tiles than two a
    /// multiprocessor and K allows chunks of at least 256.
    /// </summary>
    public static int SplitsFor(Device device, bool transposeA, bool transposeB, int batch, int m, int k, int n)
    {
        if (batch != 1 || !transposeA || transposeB || k < 1024) return 1;
        long tiles = (long)((m + Tile - 1) / Tile) * ((n + Tile - 1) / Tile);
        long wanted = 2L * device.Accelerator.NumMultiprocessors;
        if (tiles >= wanted) return 1;
        return (int)Math.Max(1, Math.Min(wanted / tiles, k / 256));
    }

    /// <summary>C (m, n) (+)= A^T B with A stored (k, m) and B (k, n), K cut into splits chunks (the last
    /// takes the remainder): partial products, summed into C.</summary>
    public static void MatMulSplitK(Device device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        int m, int k, int n, bool accumulate, int splits)
    {
        if (m == 0 || n == 0) return;
        if (splits < 1 || splits > k) throw new ArgumentOutOfRangeException(nameof(splits), $"split-K: {splits} chunks of K = {k}");
        int chunk = k / splits, covered = chunk * splits;
        using var partial = device.Pool.Rent<float>((long)splits * m * n);   // (splits, m, n)
        var aChunks = a.SubView(0, (long)covered * m);
        var bChunks = b.SubView(0, (long)covered * n);
        Launch(device, UsesVectorLoads(aChunks, true, bChunks, false, m, chunk, n) ? 4 : 1, aChunks, true, bChunks, false,
            partial.View, splits, m, chunk, n, sharedB: false, accumulate: false);
        ReduceKernels.SumAxis(device, partial.View, c, 1, splits, m * n, 1f, accumulate);
        if (covered < k)
        {
            var aTail = a.SubView((long)covered * m, (long)(k - covered) * m);
            var bTail = b.SubView((long)covered * n, (long)(k - covered) * n);
            Launch(device, UsesVectorLoads(aTail, true, bTail, false, m, k - covered, n) ? 4 : 1, aTail, true, bTail, false,
                c, 1, m, k - covered, n, sharedB: true, accumulate: true);
        }
    }
}
