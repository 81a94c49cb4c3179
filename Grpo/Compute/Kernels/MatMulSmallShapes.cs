// The matmul launcher's two shapes where 128 x 128 tiles leave the GPU idle (MatMulKernels.cs has the
// tiled kernels, the launcher and the history of versions):
//   skinny   C (M, N) (+)= A (M, K) @ B^T for few rows M (a decode step: one new token a sequence):
//            a warp per 8 rows x 1 column, lanes along K, shuffles to sum;
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
        Launch(device, UsesVectorLoads(aChunks, true, bChunks, false, m, chunk, n), aChunks, true, bChunks, false,
            partial.View, splits, m, chunk, n, sharedB: false, accumulate: false);
        ReduceKernels.SumAxis(device, partial.View, c, 1, splits, m * n, 1f, accumulate);
        if (covered < k)
        {
            var aTail = a.SubView((long)covered * m, (long)(k - covered) * m);
            var bTail = b.SubView((long)covered * n, (long)(k - covered) * n);
            Launch(device, UsesVectorLoads(aTail, true, bTail, false, m, k - covered, n), aTail, true, bTail, false,
                c, 1, m, k - covered, n, sharedB: true, accumulate: true);
        }
    }
}
