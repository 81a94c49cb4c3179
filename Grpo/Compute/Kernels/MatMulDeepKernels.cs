// v4 of the tiled matmul: v3 (MatMulLayoutKernels.cs) with a k-step of 16 instead of 8.
//
// Why: v3 measured 29 TFLOP/s where an operand is stored along k (A @ B, x @ W^T) and 34 where both are
// stored along their rows (A^T @ B). Along k, a k-step of 8 reads 32 bytes of each of 128 rows, 16
// rows a warp's load; 16 reads 64 bytes a row (two sectors), and each barrier is paid once per 16
// k instead of per 8, with twice the multiply-adds between barriers to hide the next loads behind.
// What changed: each thread fetches two Float4 of each slice (along k: rows t / 4 and 64 + t / 4,
// k 4 (t % 4); along rows: k t / 32 and 8 + t / 32, rows 4 (t % 32)); shared memory 32 KB a group
// (two groups an SM still fit). Registers: 120 to 122 (v3: 106).
// Measured on the H200 at 4096^3 (`grpo bench --device cuda`, one run): A @ B 35.7 TFLOP/s (v3 29.2),
// x @ W^T 34.2 (29.0), A^T @ B 36.7 (34.0); cuBLAS fp32 51. The launcher's choice since.
// Half height (MatMulDeepHalfKernel): 64 x 128 tiles where 128 x 128 ones leave SMs idle (the small
// shape's N = 256 products: 128 tiles for 264 slots). Measured on the H200, x (8192, 256) @ W^T (256, 256):
// 19.96 TFLOP/s against 22.38 at full height, and the small training step 11.97 ms against 11.47: twice
// the groups, but each does half the multiply-adds per shared-memory read. Not taken by the launcher; kept
// with its figure (gemm_small_n_half) as the measured negative result.
// Tests: Grpo.Tests/Compute/MatMulKernelTests.cs (v4 at the four layouts vs the CPU, both heights), PtxCompileTests.cs.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static partial class MatMulKernels
{
    public const int DeepKStep = 16;
    /// <summary>Floats in one (DeepKStep x Tile) slice of one operand.</summary>
    public const int DeepSliceFloats = DeepKStep * Tile;

    /// <summary>v4: v3 with a k-step of 16 (two Float4 of each slice a thread).</summary>
    public static void MatMulDeepKernel<TA, TB>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s)
        where TA : struct, IOperandLayout
        where TB : struct, IOperandLayout
    {
        var aSlices = SharedMemory.Allocate<Float4>(2 * DeepSliceFloats / 4);
        var bSlices = SharedMemory.Allocate<Float4>(2 * DeepSliceFloats / 4);
        var aSliceFloats = aSlices.Cast<float>();
        var bSliceFloats = bSlices.Cast<float>();
        var a4 = a.Cast<Float4>();
        var b4 = b.Cast<Float4>();
        int thread = Group.IdxX;
        int tx = thread % ThreadsPerSide, ty = thread / ThreadsPerSide;
        int rowBase = Grid.IdxY * Tile, colBase = Grid.IdxX * Tile;
        bool aAlongK = default(TA).KContiguous, bAlongK = default(TB).KContiguous;

        var aLoad = DeepLoad.For(aAlongK, Grid.IdxZ * s.AStride, s.M, s.K, rowBase, thread);
        var bLoad = DeepLoad.For(bAlongK, Grid.IdxZ * s.BStride, s.N, s.K, colBase, thread);
        var aNext = aLoad.Fetch(a4, 0, s.K);
        var bNext = bLoad.Fetch(b4, 0, s.K);
        StoreDeep(aSlices, aSliceFloats, 0, aAlongK, thread, aNext);
        StoreDeep(bSlices, bSliceFloats, 0, bAlongK, thread, bNext);
        Group.Barrier();

        Float8 acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Float8 acc4 = default, acc5 = default, acc6 = default, acc7 = default;
        int buffer = 0;
        for (int k0 = 0; k0 < s.K; k0 += DeepKStep)
        {
            bool more = k0 + DeepKStep < s.K; // the same for the whole group, so the barrier below is safe
            if (more)
            {
                aNext = aLoad.Fetch(a4, k0 + DeepKStep, s.K);
                bNext = bLoad.Fetch(b4, k0 + DeepKStep, s.K);
            }

            int steps = s.K - k0 < DeepKStep ? s.K - k0 : DeepKStep; // a run-time bound keeps this loop rolled
            int quadBase = buffer * DeepSliceFloats / 4;
            for (int kk = 0; kk < steps; kk++)
            {
                int rowQuad = quadBase + kk * Tile / 4 + ty, colQuad = quadBase + kk * Tile / 4 + tx;
                Float4 aLow = aSlices[rowQuad], aHigh = aSlices[rowQuad + 16];
                Float4 bLow = bSlices[colQuad], bHigh = bSlices[colQuad + 16];
                var bRow = new Float8
                {
                    V0 = bLow.X, V1 = bLow.Y, V2 = bLow.Z, V3 = bLow.W,
                    V4 = bHigh.X, V5 = bHigh.Y, V6 = bHigh.Z, V7 = bHigh.W,
                };
                acc0 = Float8.MultiplyAdd(aLow.X, bRow, acc0);
                acc1 = Float8.MultiplyAdd(aLow.Y, bRow, acc1);
                acc2 = Float8.MultiplyAdd(aLow.Z, bRow, acc2);
                acc3 = Float8.MultiplyAdd(aLow.W, bRow, acc3);
                acc4 = Float8.MultiplyAdd(aHigh.X, bRow, acc4);
                acc5 = Float8.MultiplyAdd(aHigh.Y, bRow, acc5);
                acc6 = Float8.MultiplyAdd(aHigh.Z, bRow, acc6);
                acc7 = Float8.MultiplyAdd(aHigh.W, bRow, acc7);
            }

            if (more)
            {
                StoreDeep(aSlices, aSliceFloats, 1 - buffer, aAlongK, thread, aNext);
                StoreDeep(bSlices, bSliceFloats, 1 - buffer, bAlongK, thread, bNext);
            }
            Group.Barrier();
            buffer = 1 - buffer;
        }

        long cBase = Grid.IdxZ * s.CStride;
        int row0 = rowBase + 4 * ty, col0 = colBase + 4 * tx;
        StoreQuadRow(c, s, cBase, row0, col0, acc0);
        StoreQuadRow(c, s, cBase, row0 + 1, col0, acc1);
        StoreQuadRow(c, s, cBase, row0 + 2, col0, acc2);
        StoreQuadRow(c, s, cBase, row0 + 3, col0, acc3);
        StoreQuadRow(c, s, cBase, row0 + 64, col0, acc4);
        StoreQuadRow(c, s, cBase, row0 + 65, col0, acc5);
        StoreQuadRow(c, s, cBase, row0 + 66, col0, acc6);
        StoreQuadRow(c, s, cBase, row0 + 67, col0, acc7);
    }

    /// <summary>A thread's two Float4 of one slice (first and second half of the rows, or of k).</summary>
    private struct DeepQuads
    {
        public Float4 First, Second;
    }

    /// <summary>Where a thread's two Float4 of each slice come from; the slice at k0 is Start + k0 * PerK floats on.</summary>
    private struct DeepLoad
    {
        public long Start, Second, PerK;
        public int KOffset, SecondKOffset;
        public bool Inside, SecondInside;

        public static DeepLoad For(bool alongK, long xBase, int rows, int kSize, int tileBase, int thread)
        {
            if (alongK)
            {
                int row = tileBase + thread / 4, k = 4 * (thread % 4);
                return new DeepLoad
                {
                    Start = xBase + (long)row * kSize + k, Second = xBase + (long)(row + 64) * kSize + k, PerK = 1,
                    KOffset = k, SecondKOffset = k, Inside = row < rows, SecondInside = row + 64 < rows,
                };
            }
            int kRow = thread / 32, column = tileBase + 4 * (thread % 32);
            return new DeepLoad
            {
                Start = xBase + (long)kRow * rows + column, Second = xBase + (long)(kRow + 8) * rows + column, PerK = rows,
                KOffset = kRow, SecondKOffset = kRow + 8, Inside = column < rows, SecondInside = column < rows,
            };
        }

        public readonly DeepQuads Fetch(ArrayView<Float4> x, int k0, int kSize) => new()
        {
            First = Inside && k0 + KOffset < kSize ? x[(Start + k0 * PerK) / 4] : default,
            Second = SecondInside && k0 + SecondKOffset < kSize ? x[(Second + k0 * PerK) / 4] : default,
        };
    }

    /// <summary>Writes a thread's two Float4 into slice buffer `buffer`, k-major ([kk * Tile + row]), transposing along-k ones.</summary>
    private static void StoreDeep(ArrayView<Float4> slices, ArrayView<float> sliceFloats, int buffer, bool alongK, int thread, DeepQuads v)
    {
        int at = buffer * DeepSliceFloats;
        if (alongK)
        {
            int row = thread / 4, kk = 4 * (thread % 4);
            StoreColumn(sliceFloats, at + kk * Tile + row, v.First);
            StoreColumn(sliceFloats, at + kk * Tile + row + 64, v.Second);
        }
        else
        {
            int kk = thread / 32, column = 4 * (thread % 32);
            slices[(at + kk * Tile + column) / 4] = v.First;
            slices[(at + (kk + 8) * Tile + column) / 4] = v.Second;
        }
    }

    /// <summary>Four values of one row at k .. k + 3 into the k-major slice: one float in each of four slice rows.</summary>
    private static void StoreColumn(ArrayView<float> sliceFloats, int at, Float4 v)
    {
        sliceFloats[at] = v.X;
        sliceFloats[at + Tile] = v.Y;
        sliceFloats[at + 2 * Tile] = v.Z;
        sliceFloats[at + 3 * Tile] = v.W;
    }

    /// <summary>Rows of C a group of the half-height variant computes.</summary>
    public const int HalfTile = 64;

    /// <summary>
    /// v4 at half height: a 64 x 128 block of C a group, each thread 4 rows x 8 columns (rows 4 ty + i,
    /// columns 4 tx + j and 64 + 4 tx + j), for products whose 128 x 128 tiles number fewer than two a
    /// multiprocessor (x @ W^T and dy @ W with N = 256: 128 groups for 264 slots on an H200). One Float4
    /// of A's slice and two of B's a thread.
    /// </summary>
    public static void MatMulDeepHalfKernel<TA, TB>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s)
        where TA : struct, IOperandLayout
        where TB : struct, IOperandLayout
    {
        var aSlices = SharedMemory.Allocate<Float4>(2 * DeepKStep * HalfTile / 4);
        var bSlices = SharedMemory.Allocate<Float4>(2 * DeepSliceFloats / 4);
        var aSliceFloats = aSlices.Cast<float>();
        var bSliceFloats = bSlices.Cast<float>();
        var a4 = a.Cast<Float4>();
        var b4 = b.Cast<Float4>();
        int thread = Group.IdxX;
        int tx = thread % ThreadsPerSide, ty = thread / ThreadsPerSide;
        int rowBase = Grid.IdxY * HalfTile, colBase = Grid.IdxX * Tile;
        bool aAlongK = default(TA).KContiguous, bAlongK = default(TB).KContiguous;

        var aLoad = HalfLoad.For(aAlongK, Grid.IdxZ * s.AStride, s.M, s.K, rowBase, thread);
        var bLoad = DeepLoad.For(bAlongK, Grid.IdxZ * s.BStride, s.N, s.K, colBase, thread);
        var aNext = aLoad.Fetch(a4, 0, s.K);
        var bNext = bLoad.Fetch(b4, 0, s.K);
        StoreHalf(aSlices, aSliceFloats, 0, aAlongK, thread, aNext);
        StoreDeep(bSlices, bSliceFloats, 0, bAlongK, thread, bNext);
        Group.Barrier();

        Float8 acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        int buffer = 0;
        for (int k0 = 0; k0 < s.K; k0 += DeepKStep)
        {
            bool more = k0 + DeepKStep < s.K; // the same for the whole group, so the barrier below is safe
            if (more)
            {
                aNext = aLoad.Fetch(a4, k0 + DeepKStep, s.K);
                bNext = bLoad.Fetch(b4, k0 + DeepKStep, s.K);
            }

            int steps = s.K - k0 < DeepKStep ? s.K - k0 : DeepKStep; // a run-time bound keeps this loop rolled
            int aQuadBase = buffer * DeepKStep * HalfTile / 4, bQuadBase = buffer * DeepSliceFloats / 4;
            for (int kk = 0; kk < steps; kk++)
            {
                Float4 aRows = aSlices[aQuadBase + kk * HalfTile / 4 + ty];
                int colQuad = bQuadBase + kk * Tile / 4 + tx;
                Float4 bLow = bSlices[colQuad], bHigh = bSlices[colQuad + 16];
                var bRow = new Float8
                {
                    V0 = bLow.X, V1 = bLow.Y, V2 = bLow.Z, V3 = bLow.W,
                    V4 = bHigh.X, V5 = bHigh.Y, V6 = bHigh.Z, V7 = bHigh.W,
                };
                acc0 = Float8.MultiplyAdd(aRows.X, bRow, acc0);
                acc1 = Float8.MultiplyAdd(aRows.Y, bRow, acc1);
                acc2 = Float8.MultiplyAdd(aRows.Z, bRow, acc2);
                acc3 = Float8.MultiplyAdd(aRows.W, bRow, acc3);
            }

            if (more)
            {
                StoreHalf(aSlices, aSliceFloats, 1 - buffer, aAlongK, thread, aNext);
                StoreDeep(bSlices, bSliceFloats, 1 - buffer, bAlongK, thread, bNext);
            }
            Group.Barrier();
            buffer = 1 - buffer;
        }

        long cBase = Grid.IdxZ * s.CStride;
        int row0 = rowBase + 4 * ty, col0 = colBase + 4 * tx;
        StoreQuadRow(c, s, cBase, row0, col0, acc0);
        StoreQuadRow(c, s, cBase, row0 + 1, col0, acc1);
        StoreQuadRow(c, s, cBase, row0 + 2, col0, acc2);
        StoreQuadRow(c, s, cBase, row0 + 3, col0, acc3);
    }

    /// <summary>A thread's Float4 of a 64-row slice: along k row t / 4, k 4 (t % 4); else k t / 16, rows 4 (t % 16).</summary>
    private struct HalfLoad
    {
        public long Start, PerK;
        public int KOffset;
        public bool Inside;

        public static HalfLoad For(bool alongK, long xBase, int rows, int kSize, int tileBase, int thread)
        {
            if (alongK)
            {
                int row = tileBase + thread / 4, k = 4 * (thread % 4);
                return new HalfLoad { Start = xBase + (long)row * kSize + k, PerK = 1, KOffset = k, Inside = row < rows };
            }
            int kRow = thread / 16, column = tileBase + 4 * (thread % 16);
            return new HalfLoad { Start = xBase + (long)kRow * rows + column, PerK = rows, KOffset = kRow, Inside = column < rows };
        }

        public readonly Float4 Fetch(ArrayView<Float4> x, int k0, int kSize) =>
            Inside && k0 + KOffset < kSize ? x[(Start + k0 * PerK) / 4] : default;
    }

    /// <summary>Writes a thread's Float4 of a 64-row slice into buffer `buffer`, k-major ([kk * 64 + row]).</summary>
    private static void StoreHalf(ArrayView<Float4> slices, ArrayView<float> sliceFloats, int buffer, bool alongK, int thread, Float4 v)
    {
        int at = buffer * DeepKStep * HalfTile;
        if (alongK)
        {
            int row = thread / 4, kk = 4 * (thread % 4);
            sliceFloats[at + kk * HalfTile + row] = v.X;
            sliceFloats[at + (kk + 1) * HalfTile + row] = v.Y;
            sliceFloats[at + (kk + 2) * HalfTile + row] = v.Z;
            sliceFloats[at + (kk + 3) * HalfTile + row] = v.W;
        }
        else
        {
            slices[(at + thread / 16 * HalfTile + 4 * (thread % 16)) / 4] = v;
        }
    }

    private static readonly Dictionary<(bool, bool), string> HalfKernelNames = new()
    {
        [(false, false)] = "matmul_v4h_nn", [(false, true)] = "matmul_v4h_nt",
        [(true, false)] = "matmul_v4h_tn", [(true, true)] = "matmul_v4h_tt",
    };

    private static Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> HalfKernel(
        Device device, bool transposeA, bool transposeB) =>
        device.Kernels.Get(HalfKernelNames[(transposeA, transposeB)], acc => (transposeA, transposeB) switch
        {
            (false, false) => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulDeepHalfKernel<KAlong, RowsAlong>),
            (false, true) => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulDeepHalfKernel<KAlong, KAlong>),
            (true, false) => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulDeepHalfKernel<RowsAlong, RowsAlong>),
            _ => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulDeepHalfKernel<RowsAlong, KAlong>),
        });

    private static readonly Dictionary<(bool, bool), string> DeepKernelNames = new()
    {
        [(false, false)] = "matmul_v4_nn", [(false, true)] = "matmul_v4_nt",
        [(true, false)] = "matmul_v4_tn", [(true, true)] = "matmul_v4_tt",
    };

    private static Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> DeepKernel(
        Device device, bool transposeA, bool transposeB) =>
        device.Kernels.Get(DeepKernelNames[(transposeA, transposeB)], acc => (transposeA, transposeB) switch
        {
            (false, false) => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulDeepKernel<KAlong, RowsAlong>),
            (false, true) => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulDeepKernel<KAlong, KAlong>),
            (true, false) => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulDeepKernel<RowsAlong, RowsAlong>),
            _ => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulDeepKernel<RowsAlong, KAlong>),
        });

    /// <summary>v4 for one product (bench, tests), at half height when asked; the shapes must allow Float4 loads.</summary>
    public static void MatMulV4(Device device, ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB,
        ArrayView<float> c, int batch, int m, int k, int n, bool sharedB, bool accumulate, bool half = false)
    {
        if (!UsesVectorLoads(a, transposeA, b, transposeB, m, k, n))
            throw new ArgumentException($"matmul v4: ({m}, {k}) x ({k}, {n}) with these transposes cannot take Float4 loads");
        if (batch == 0 || m == 0 || n == 0) return;
        var shape = new GemmShape
        {
            M = m, K = k, N = n,
            AStride = (long)m * k, BStride = sharedB ? 0 : (long)k * n, CStride = (long)m * n,
            TransposeA = transposeA ? 1 : 0, TransposeB = transposeB ? 1 : 0, Accumulate = accumulate ? 1 : 0,
        };
        int tileRows = half ? HalfTile : Tile;
        var grid = new Index3D((n + Tile - 1) / Tile, (m + tileRows - 1) / tileRows, batch);
        var kernel = half ? HalfKernel(device, transposeA, transposeB) : DeepKernel(device, transposeA, transposeB);
        kernel(new KernelConfig(grid, new Index3D(ThreadsPerGroup, 1, 1)), a, b, c, shape);
    }
}
