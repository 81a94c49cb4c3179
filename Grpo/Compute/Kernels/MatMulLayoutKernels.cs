// v3 of the tiled matmul (MatMulKernels.cs has v1, v2 and the launcher): v2's recipe (128 x 128 block
// tile, k-step 8, 8 x 8 outputs a thread, Float4 loads, double-buffered shared memory) with each
// operand's layout fixed when the kernel is compiled instead of tested at run time.
//
// Why: v2 reached 0.55x cuBLAS at 4096^3 where shared/GPU.md's prototype of the same recipe, written
// for one layout, reached 0.74x; GPU.md also measured that one group a multiprocessor instead of two
// costs about 35%, which is what a kernel past 128 registers a thread gets at 256 threads. v2 carries
// both layouts' index arithmetic (64-bit multiplies each k-step) and the run-time choice between them.
// What changed:
//   - the layouts are type parameters (KAlong: the operand stored with k contiguous, A (M, K) or
//     B^T (N, K); RowsAlong: stored (K, rows), A^T (K, M) or B (K, N)), so each of the four instances
//     holds only its own arithmetic;
//   - each thread's load address is computed once and advanced by a constant each k-step;
//   - `grpo bench` reports the registers the driver gave each version (KernelCache.Attributes).
// Measured on the H200 at 4096^3: A @ B 29.2 TFLOP/s, x @ W^T 29.0, A^T @ B 34.0 (v2: 27.9, 96 registers;
// v3: 106 registers, so occupancy was not v2's limit). v4 (MatMulDeepKernels.cs) replaced it in the launcher.
// Tests: Grpo.Tests/Compute/MatMulKernelTests.cs (v3 at the four layouts vs the CPU), PtxCompileTests.cs.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

/// <summary>How a matmul operand is stored, fixed at compile time: whether k is its contiguous axis.</summary>
public interface IOperandLayout
{
    bool KContiguous { get; }
}

/// <summary>Stored (rows, K): A, or B transposed (a linear layer's weight).</summary>
public struct KAlong : IOperandLayout
{
    public readonly bool KContiguous => true;
}

/// <summary>Stored (K, rows): A transposed, or B.</summary>
public struct RowsAlong : IOperandLayout
{
    public readonly bool KContiguous => false;
}

public static partial class MatMulKernels
{
    /// <summary>v3: v2 with A's and B's layouts fixed by TA and TB (GemmShape's transpose flags are not read).</summary>
    public static void MatMulLayoutKernel<TA, TB>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s)
        where TA : struct, IOperandLayout
        where TB : struct, IOperandLayout
    {
        var aSlices = SharedMemory.Allocate<Float4>(2 * SliceFloats / 4);
        var bSlices = SharedMemory.Allocate<Float4>(2 * SliceFloats / 4);
        var aSliceFloats = aSlices.Cast<float>();
        var bSliceFloats = bSlices.Cast<float>();
        var a4 = a.Cast<Float4>();
        var b4 = b.Cast<Float4>();
        int thread = Group.IdxX;
        int tx = thread % ThreadsPerSide, ty = thread / ThreadsPerSide;
        int rowBase = Grid.IdxY * Tile, colBase = Grid.IdxX * Tile;
        bool aAlongK = default(TA).KContiguous, bAlongK = default(TB).KContiguous;

        var aLoad = QuadLoad.For(aAlongK, Grid.IdxZ * s.AStride, s.M, s.K, rowBase, thread);
        var bLoad = QuadLoad.For(bAlongK, Grid.IdxZ * s.BStride, s.N, s.K, colBase, thread);
        var aNext = aLoad.Fetch(a4, 0, s.K);
        var bNext = bLoad.Fetch(b4, 0, s.K);
        StoreSliceQuad(aSlices, aSliceFloats, 0, aAlongK ? 1 : 0, thread, aNext);
        StoreSliceQuad(bSlices, bSliceFloats, 0, bAlongK ? 1 : 0, thread, bNext);
        Group.Barrier();

        Float8 acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Float8 acc4 = default, acc5 = default, acc6 = default, acc7 = default;
        int buffer = 0;
        for (int k0 = 0; k0 < s.K; k0 += KStep)
        {
            bool more = k0 + KStep < s.K; // the same for the whole group, so the barrier below is safe
            if (more)
            {
                aNext = aLoad.Fetch(a4, k0 + KStep, s.K);
                bNext = bLoad.Fetch(b4, k0 + KStep, s.K);
            }

            int steps = s.K - k0 < KStep ? s.K - k0 : KStep; // a run-time bound keeps this loop rolled
            int quadBase = buffer * SliceFloats / 4;
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
                StoreSliceQuad(aSlices, aSliceFloats, 1 - buffer, aAlongK ? 1 : 0, thread, aNext);
                StoreSliceQuad(bSlices, bSliceFloats, 1 - buffer, bAlongK ? 1 : 0, thread, bNext);
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

    /// <summary>
    /// One thread's Float4 of each slice, as LoadSliceQuad takes it (along k: row t / 2, k 4 (t % 2);
    /// else k t / 32, rows 4 (t % 32)), with the address of the first slice computed once: the slice
    /// at k0 is Start + k0 * PerK floats on.
    /// </summary>
    private struct QuadLoad
    {
        public long Start, PerK;
        public int KOffset;
        public bool Inside;

        public static QuadLoad For(bool alongK, long xBase, int rows, int kSize, int tileBase, int thread)
        {
            if (alongK)
            {
                int row = tileBase + thread / 2, k = 4 * (thread % 2);
                return new QuadLoad { Start = xBase + (long)row * kSize + k, PerK = 1, KOffset = k, Inside = row < rows };
            }
            int kRow = thread / 32, column = tileBase + 4 * (thread % 32);
            return new QuadLoad { Start = xBase + (long)kRow * rows + column, PerK = rows, KOffset = kRow, Inside = column < rows };
        }

        public readonly Float4 Fetch(ArrayView<Float4> x, int k0, int kSize) =>
            Inside && k0 + KOffset < kSize ? x[(Start + k0 * PerK) / 4] : default;
    }

    private static readonly Dictionary<(bool, bool), string> LayoutKernelNames = new()
    {
        [(false, false)] = "matmul_v3_nn", [(false, true)] = "matmul_v3_nt",
        [(true, false)] = "matmul_v3_tn", [(true, true)] = "matmul_v3_tt",
    };

    /// <summary>v3 with the instance for these transposes (needs what UsesVectorLoads checks).</summary>
    private static Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> LayoutKernel(
        Device device, bool transposeA, bool transposeB) =>
        device.Kernels.Get(LayoutKernelNames[(transposeA, transposeB)], acc => (transposeA, transposeB) switch
        {
            (false, false) => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulLayoutKernel<KAlong, RowsAlong>),
            (false, true) => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulLayoutKernel<KAlong, KAlong>),
            (true, false) => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulLayoutKernel<RowsAlong, RowsAlong>),
            _ => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulLayoutKernel<RowsAlong, KAlong>),
        });

    /// <summary>v3 for one product whatever the launcher would pick (bench, tests); the shapes must allow Float4 loads.</summary>
    public static void MatMulV3(Device device, ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB,
        ArrayView<float> c, int batch, int m, int k, int n, bool sharedB, bool accumulate)
    {
        if (!UsesVectorLoads(a, transposeA, b, transposeB, m, k, n))
            throw new ArgumentException($"matmul v3: ({m}, {k}) x ({k}, {n}) with these transposes cannot take Float4 loads");
        Launch(device, 3, a, transposeA, b, transposeB, c, batch, m, k, n, sharedB, accumulate);
    }
}
