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
// Tried and dropped: v4 at half height (64 x 128 tiles, 4 x 8 outputs a thread) where 128 x 128 tiles
// leave SMs idle (the small shape's N = 256 products: 128 tiles for 264 slots). Measured on the H200,
// x (8192, 256) @ W^T (256, 256): 19.96 TFLOP/s against 22.38 at full height (figure gemm_small_n), and the
// small training step 11.97 ms against 11.47: twice the groups, but half the multiply-adds per
// shared-memory read.
// Tests: Grpo.Tests/Compute/MatMulKernelTests.cs (v4 at the four layouts vs the CPU), PtxCompileTests.cs.
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

    /// <summary>v4 for one product (the launcher, bench, tests); the shapes must allow Float4 loads.</summary>
    public static void MatMulV4(Device device, ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB,
        ArrayView<float> c, int batch, int m, int k, int n, bool sharedB, bool accumulate)
    {
        if (!UsesVectorLoads(a, transposeA, b, transposeB, m, k, n))
            throw new ArgumentException($"matmul v4: ({m}, {k}) x ({k}, {n}) with these transposes cannot take Float4 loads");
        Launch(device, 4, a, transposeA, b, transposeB, c, batch, m, k, n, sharedB, accumulate);
    }
}
