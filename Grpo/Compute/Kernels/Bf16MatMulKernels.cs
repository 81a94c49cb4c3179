// The bf16 matmul on a device: z (m, n) (+)= op(x) (m, k) @ op(y) (k, n) with both operands rounded to
// bf16 and every sum in fp32, the device half of Op.MatMul's MatMulPrecision.Bf16 (Ops/MatMul.cs has
// the CPU spec it is checked against). Built around the tensor-core GEMM (TensorCoreGemmKernels.cs),
// which takes A (M, K) and Bt (N, K) in bf16 with M, N multiples of 128 and K of 64:
//   1. convert: A = bf16(op(x)) into a pooled (Mp, Kp) buffer and Bt = bf16(op(y)^T) into (Np, Kp),
//      each transposed when its stored layout is not the one the GEMM wants, zero outside (m, k) and
//      (n, k) (zero padding adds nothing to a sum);
//   2. the GEMM: C (Mp, Np) fp32 = A @ Bt^T (when m, n are already tile multiples and nothing is added
//      to z, straight into z);
//   3. epilogue: z[i, j] = C[i, j] (or += for gradient accumulation) for i < m, j < n.
// Split-K (SplitsFor): a product with few output tiles and a long K (dW = dy^T x: a 256 x 256 weight is 4
// tiles, K is every token of the batch) runs K's chunks as grid.Z of the one GEMM launch into partial
// products, summed by ReduceKernels.SumAxis in a fixed order. Without it the small shape's bf16 training
// step was slower than fp32's (13.1 ms against 11.5 on the H200: 4 groups each walking K = 8192).
// A linear layer's three products, with x (rows, in), W (out, in), y = x W^T:
//   forward  y  = x W^T      A = x,        Bt = W          (no transposes)
//   dx       dx += dy W      A = dy,       Bt = W^T        (the weight transposed: small)
//   dW       dW += dy^T x    A = dy^T,     Bt = x^T        (both activations transposed)
// Conversion kernels: v1 ConvertKernel, one thread per output element: coalesced when the source is
// stored in the output's layout, strided reads when it is transposed; v2 ConvertTransposedKernel for
// the transposed case: a 32 x 32 tile staged through shared memory (row 33 wide: no bank conflicts),
// so both the reads and the writes are coalesced.
// The GEMM is inline PTX (mma.sync) and runs only on CUDA; on any other accelerator (ILGPU's CPU
// accelerator in the tests) FallbackGemmKernel computes the same bf16-input, fp32-sum product with one
// thread per output, so conversion, padding, transposes and epilogue are all tested without a GPU and
// only the mma kernel itself differs on CUDA.
// Sizes whose padded buffers pass int.MaxValue elements (Covers) are not taken: Op.MatMul runs them in fp32.
// Tests: Grpo.Tests/Compute/Bf16MatMulTests.cs; on a GPU `grpo check --device cuda --precision bf16`.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

/// <summary>Sizes of a conversion: the source's logical (rows, columns) and the padded output's.</summary>
public struct Bf16ConvertShape
{
    public int Rows, Columns, PaddedRows, PaddedColumns;
}

public static class Bf16MatMulKernels
{
    /// <summary>The side of ConvertTransposedKernel's tile.</summary>
    public const int TransposeTile = 32;

    /// <summary>v1. dst (PaddedRows, PaddedColumns) = bf16(src) where src is (Rows, Columns) row-major, or
    /// stored transposed as (Columns, Rows) when transposed is 1; zero outside (Rows, Columns).</summary>
    public static void ConvertKernel(Index1D i, ArrayView<float> src, ArrayView<ushort> dst, Bf16ConvertShape s, int transposed)
    {
        int row = (int)(i / s.PaddedColumns), column = (int)(i % s.PaddedColumns);
        float value = 0f;
        if (row < s.Rows && column < s.Columns)
            value = transposed != 0 ? src[(long)column * s.Rows + row] : src[(long)row * s.Columns + column];
        dst[i] = TensorCoreGemmKernels.ToBf16(value);
    }

    /// <summary>v2, transposed sources only: grid (PaddedColumns / 32, PaddedRows / 32), any group size. The group
    /// reads a 32 x 32 tile of the stored (Columns, Rows) source along its rows, and writes it along the output's.</summary>
    public static void ConvertTransposedKernel(ArrayView<float> src, ArrayView<ushort> dst, Bf16ConvertShape s)
    {
        var tile = SharedMemory.Allocate<float>(TransposeTile * (TransposeTile + 1)); // [stored row][stored column]
        int rowBase = Grid.IdxY * TransposeTile, columnBase = Grid.IdxX * TransposeTile;
        for (int e = Group.IdxX; e < TransposeTile * TransposeTile; e += Group.DimX)
        {
            int storedRow = e / TransposeTile, storedColumn = e % TransposeTile; // an output column, an output row
            int column = columnBase + storedRow, row = rowBase + storedColumn;
            tile[storedRow * (TransposeTile + 1) + storedColumn] =
                row < s.Rows && column < s.Columns ? src[(long)column * s.Rows + row] : 0f;
        }
        Group.Barrier();
        for (int e = Group.IdxX; e < TransposeTile * TransposeTile; e += Group.DimX)
        {
            int localRow = e / TransposeTile, localColumn = e % TransposeTile;
            dst[(long)(rowBase + localRow) * s.PaddedColumns + columnBase + localColumn] =
                TensorCoreGemmKernels.ToBf16(tile[localColumn * (TransposeTile + 1) + localRow]);
        }
    }

    /// <summary>c (m, n) = a (m, k) @ bt (n, k)^T on bf16 bit patterns with fp32 sums in k order: what the
    /// tensor-core GEMM computes, for accelerators without tensor cores. One thread per output; with split-K,
    /// the sum over [k0, k0 + kCount) only.</summary>
    public static void FallbackGemmKernel(Index1D i, ArrayView<ushort> a, ArrayView<ushort> bt, ArrayView<float> c, int n, int k,
        int k0, int kCount)
    {
        long row = i / n, column = i % n;
        float sum = 0f;
        for (int p = k0; p < k0 + kCount; p++)
            sum += TensorCoreGemmKernels.FromBf16(a[row * k + p]) * TensorCoreGemmKernels.FromBf16(bt[column * k + p]);
        c[i] = sum;
    }

    /// <summary>z[i, j] (+)= c[i, j] for i < m, j < n, c being (m', paddedColumns).</summary>
    public static void EpilogueKernel(Index1D i, ArrayView<float> c, ArrayView<float> z, int n, int paddedColumns, int accumulate)
    {
        long row = i / n, column = i % n;
        float value = c[row * paddedColumns + column];
        z[i] = accumulate != 0 ? z[i] + value : value;
    }

    /// <summary>Whether MatMul takes these sizes: every padded buffer's length must fit a 1D launch (an int).</summary>
    public static bool Covers(int m, int k, int n)
    {
        long mp = RoundUp(m, TensorCoreGemmKernels.Tile), np = RoundUp(n, TensorCoreGemmKernels.Tile);
        long kp = RoundUp(Math.Max(k, 1), TensorCoreGemmKernels.KTile);
        return mp * np <= int.MaxValue && mp * kp <= int.MaxValue && np * kp <= int.MaxValue;
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>
    /// z (m, n) (+)= bf16(op(x)) (m, k) @ bf16(op(y)) (k, n) in fp32; a transposed x is stored (k, m), a
    /// transposed y (n, k), as in MatMulKernels.MatMul. Temporaries come from the device's pool.
    /// </summary>
    public static void MatMul(Device device, ArrayView<float> x, bool transposeX, ArrayView<float> y, bool transposeY,
        ArrayView<float> z, int m, int k, int n, bool accumulate)
    {
        if (m == 0 || n == 0) return;
        if (!Covers(m, k, n)) throw new ArgumentException($"bf16 matmul: M {m}, K {k}, N {n} pad past a 1D launch's {int.MaxValue} elements");
        int mp = RoundUp(m, TensorCoreGemmKernels.Tile), np = RoundUp(n, TensorCoreGemmKernels.Tile);
        int kp = RoundUp(Math.Max(k, 1), TensorCoreGemmKernels.KTile);
        using var a = device.Pool.Rent<ushort>((long)mp * kp);
        using var bt = device.Pool.Rent<ushort>((long)np * kp);
        // A = op(x) as stored (m, k): x itself, or x (k, m) transposed. Bt = op(y)^T (n, k): y (n, k) itself when
        // transposeY, else y (k, n) transposed.
        Convert(device, x, transposeX, a.View, m, k, mp, kp);
        Convert(device, y, !transposeY, bt.View, n, k, np, kp);

        int splits = SplitsFor(device, mp, np, kp);
        if (splits > 1)
        {
            // Few output tiles and a long K (a weight gradient: K is every token of the batch): the chunks of K
            // run as groups of one launch into partial products, summed in a fixed order (the same bits every run).
            using var partial = device.Pool.Rent<float>((long)splits * mp * np);   // (splits, mp, np)
            Gemm(device, a.View, bt.View, partial.View, mp, np, kp, splits);
            if (mp == m && np == n)
            {
                ReduceKernels.SumAxis(device, partial.View, z.SubView(0, (long)m * n), 1, splits, m * n, 1f, accumulate);
                return;
            }
            using var summed = device.Pool.Rent<float>((long)mp * np);
            ReduceKernels.SumAxis(device, partial.View, summed.View, 1, splits, mp * np, 1f, accumulate: false);
            Epilogue(device, summed.View, z, m, n, np, accumulate);
            return;
        }
        bool direct = !accumulate && mp == m && np == n && z.LoadEffectiveAddressAsPtr().ToInt64() % 16 == 0;
        PooledBuffer<float>? padded = direct ? null : device.Pool.Rent<float>((long)mp * np);
        var c = padded?.View ?? z;
        Gemm(device, a.View, bt.View, c, mp, np, kp);
        if (padded != null)
        {
            Epilogue(device, padded.View, z, m, n, np, accumulate);
            padded.Dispose(); // later kernels on the one stream write it only after this one has read it
        }
    }

    /// <summary>z (m, n) (+)= the top-left (m, n) of c (., paddedColumns).</summary>
    private static void Epilogue(Device device, ArrayView<float> c, ArrayView<float> z, int m, int n, int paddedColumns, bool accumulate)
    {
        var kernel = device.Kernels.Get("bf16_epilogue", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int>(EpilogueKernel));
        kernel((int)((long)m * n), c, z, n, paddedColumns, accumulate ? 1 : 0);
    }

    /// <summary>
    /// How many chunks to cut K into: 1 unless the output has fewer 128 x 128 tiles than two a multiprocessor
    /// and K has at least 8 k-tiles; then as many as fill the device, dividing K's k-tiles evenly.
    /// </summary>
    public static int SplitsFor(Device device, int mp, int np, int kp)
    {
        long tiles = (long)(mp / TensorCoreGemmKernels.Tile) * (np / TensorCoreGemmKernels.Tile);
        long wanted = 2L * device.Accelerator.NumMultiprocessors;
        int kTiles = kp / TensorCoreGemmKernels.KTile;
        if (tiles >= wanted || kTiles < 8) return 1;
        int target = (int)Math.Min((wanted + tiles - 1) / tiles, kTiles / 4);
        for (int splits = target; splits > 1; splits--)
            if (kTiles % splits == 0) return splits;
        return 1;
    }

    /// <summary>C (splits, m, n) = A @ Bt^T over each of splits chunks of K: the tensor-core GEMM on CUDA, FallbackGemmKernel elsewhere.</summary>
    public static void Gemm(Device device, ArrayView<ushort> a, ArrayView<ushort> bt, ArrayView<float> c, int m, int n, int k, int splits = 1)
    {
        if (device.Kind == DeviceKind.Cuda)
        {
            TensorCoreGemmKernels.Gemm(device, a, bt, c, m, n, k, pipelined: true, splits);
            return;
        }
        var kernel = device.Kernels.Get("bf16_gemm_fallback", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, int, int, int, int>(FallbackGemmKernel));
        int chunk = k / splits;
        for (int split = 0; split < splits; split++)
            kernel((int)((long)m * n), a, bt, c.SubView((long)split * m * n, (long)m * n), n, k, split * chunk, chunk);
    }

    /// <summary>dst (paddedRows, paddedColumns) = bf16 of the logical (rows, columns) src, stored transposed
    /// when transposed; v2 (shared-memory tile) for transposed sources unless v1 is asked for.</summary>
    public static void Convert(Device device, ArrayView<float> src, bool transposed, ArrayView<ushort> dst,
        int rows, int columns, int paddedRows, int paddedColumns, bool v1 = false)
    {
        var shape = new Bf16ConvertShape { Rows = rows, Columns = columns, PaddedRows = paddedRows, PaddedColumns = paddedColumns };
        if (transposed && !v1 && paddedRows % TransposeTile == 0 && paddedColumns % TransposeTile == 0)
        {
            var tiled = device.Kernels.Get("bf16_convert_transposed", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, Bf16ConvertShape>(ConvertTransposedKernel));
            int threads = Math.Min(256, device.Accelerator.MaxNumThreadsPerGroup);
            var config = new KernelConfig(new Index3D(paddedColumns / TransposeTile, paddedRows / TransposeTile, 1), new Index3D(threads, 1, 1));
            tiled(config, src, dst, shape);
            return;
        }
        var kernel = device.Kernels.Get("bf16_convert", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>, Bf16ConvertShape, int>(ConvertKernel));
        kernel((int)((long)paddedRows * paddedColumns), src, dst, shape, transposed ? 1 : 0);
    }
}
