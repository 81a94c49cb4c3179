// The CUDA port of Ops/MatMul.cs's product: C[s] (M, N) (+)= op(A[s]) @ op(B[s]) for every batch
// index s, op the identity or the transpose of a stored matrix (A stored (M, K) or (K, M); B stored
// (K, N) or (N, K)); B may be shared by the whole batch (stride 0). The backward products of MatMul
// are the same kernel with other transposes: dA' = dC @ B'^T, dB' = A'^T @ dC (accumulate on).
//
// Algorithm: the classic shared-memory tiled GEMM with a register tile, first version, chosen to be
// plainly correct and already far from naive:
// - one group of 256 threads computes a 128 x 128 block of C; the K axis is walked KStep = 8 at a
//   time: the group copies an (8 x 128) slice of op(A) and of op(B) into shared memory, k-major
//   (so a row of the slice is what the inner loop reads), with zeros past the matrix edges;
// - each thread keeps an 8 x 8 register tile of C: rows ty + 16 i, columns tx + 16 j (strided, so
//   the 16 threads of a half-warp read 16 consecutive floats of shared memory: no bank conflicts,
//   and store 16 consecutive floats of C: coalesced);
// - scalar loads. shared/GPU.md measured the next steps on the H200: 16-byte vector loads
//   (view.Cast<F4>()) doubled this design's speed, double buffering added a little more.
// Launched with an explicit KernelConfig (shared memory and barriers need a known group size).
// Tests: Grpo.Tests/Compute/KernelTests.cs (vs the CPU reference on ILGPU's CPU accelerator),
// PtxCompileTests.cs; on a GPU: `grpo check --device cuda`; speed: `grpo bench --device cuda`.
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

/// <summary>Sizes and layout of one batched product; strides in elements (BStride 0 = B shared).</summary>
public struct GemmShape
{
    public int M, K, N;
    public long AStride, BStride, CStride;
    public int TransposeA, TransposeB, Accumulate;
}

public static class MatMulKernels
{
    public const int Tile = 128;
    public const int KStep = 8;
    public const int ThreadsPerSide = 16;
    public const int ThreadsPerGroup = ThreadsPerSide * ThreadsPerSide;

    /// <summary>Eight floats of one register row: values, so ILGPU keeps them in registers.</summary>
    public struct Float8
    {
        public float V0, V1, V2, V3, V4, V5, V6, V7;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Float8 MultiplyAdd(float x, Float8 b, Float8 acc) => new()
        {
            V0 = acc.V0 + x * b.V0, V1 = acc.V1 + x * b.V1, V2 = acc.V2 + x * b.V2, V3 = acc.V3 + x * b.V3,
            V4 = acc.V4 + x * b.V4, V5 = acc.V5 + x * b.V5, V6 = acc.V6 + x * b.V6, V7 = acc.V7 + x * b.V7,
        };
    }

    /// <summary>Grid (N / Tile, M / Tile, batch) of groups of ThreadsPerGroup threads.</summary>
    public static void MatMulKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s)
    {
        var aSlice = SharedMemory.Allocate<float>(KStep * Tile); // [kk * Tile + row] = op(A)[row, k0 + kk]
        var bSlice = SharedMemory.Allocate<float>(KStep * Tile); // [kk * Tile + col] = op(B)[k0 + kk, col]
        int thread = Group.IdxX;
        int tx = thread % ThreadsPerSide, ty = thread / ThreadsPerSide;
        int rowBase = Grid.IdxY * Tile, colBase = Grid.IdxX * Tile;
        long aBase = Grid.IdxZ * s.AStride, bBase = Grid.IdxZ * s.BStride, cBase = Grid.IdxZ * s.CStride;

        Float8 acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Float8 acc4 = default, acc5 = default, acc6 = default, acc7 = default;

        for (int k0 = 0; k0 < s.K; k0 += KStep)
        {
            // Each thread copies 4 elements of each slice; consecutive threads take consecutive
            // addresses in whichever direction the stored matrix is contiguous.
            for (int e = thread; e < KStep * Tile; e += ThreadsPerGroup)
            {
                int kk, r;
                if (s.TransposeA != 0) { kk = e / Tile; r = e % Tile; } else { r = e / KStep; kk = e % KStep; }
                int row = rowBase + r, k = k0 + kk;
                float value = 0f;
                if (row < s.M && k < s.K)
                    value = s.TransposeA != 0 ? a[aBase + (long)k * s.M + row] : a[aBase + (long)row * s.K + k];
                aSlice[kk * Tile + r] = value;

                int colOffset;
                if (s.TransposeB != 0) { colOffset = e / KStep; kk = e % KStep; } else { kk = e / Tile; colOffset = e % Tile; }
                int col = colBase + colOffset;
                k = k0 + kk;
                value = 0f;
                if (col < s.N && k < s.K)
                    value = s.TransposeB != 0 ? b[bBase + (long)col * s.K + k] : b[bBase + (long)k * s.N + col];
                bSlice[kk * Tile + colOffset] = value;
            }
            Group.Barrier();

            for (int kk = 0; kk < KStep; kk++)
            {
                int rowAt = kk * Tile + ty, colAt = kk * Tile + tx;
                var bRow = new Float8
                {
                    V0 = bSlice[colAt], V1 = bSlice[colAt + 16], V2 = bSlice[colAt + 32], V3 = bSlice[colAt + 48],
                    V4 = bSlice[colAt + 64], V5 = bSlice[colAt + 80], V6 = bSlice[colAt + 96], V7 = bSlice[colAt + 112],
                };
                acc0 = Float8.MultiplyAdd(aSlice[rowAt], bRow, acc0);
                acc1 = Float8.MultiplyAdd(aSlice[rowAt + 16], bRow, acc1);
                acc2 = Float8.MultiplyAdd(aSlice[rowAt + 32], bRow, acc2);
                acc3 = Float8.MultiplyAdd(aSlice[rowAt + 48], bRow, acc3);
                acc4 = Float8.MultiplyAdd(aSlice[rowAt + 64], bRow, acc4);
                acc5 = Float8.MultiplyAdd(aSlice[rowAt + 80], bRow, acc5);
                acc6 = Float8.MultiplyAdd(aSlice[rowAt + 96], bRow, acc6);
                acc7 = Float8.MultiplyAdd(aSlice[rowAt + 112], bRow, acc7);
            }
            Group.Barrier();
        }

        int col0 = colBase + tx;
        StoreRow(c, s, cBase, rowBase + ty, col0, acc0);
        StoreRow(c, s, cBase, rowBase + ty + 16, col0, acc1);
        StoreRow(c, s, cBase, rowBase + ty + 32, col0, acc2);
        StoreRow(c, s, cBase, rowBase + ty + 48, col0, acc3);
        StoreRow(c, s, cBase, rowBase + ty + 64, col0, acc4);
        StoreRow(c, s, cBase, rowBase + ty + 80, col0, acc5);
        StoreRow(c, s, cBase, rowBase + ty + 96, col0, acc6);
        StoreRow(c, s, cBase, rowBase + ty + 112, col0, acc7);
    }

    /// <summary>Writes (or adds) one register row to C[row, col0 + 16 j], skipping what lies outside C.</summary>
    private static void StoreRow(ArrayView<float> c, GemmShape s, long cBase, int row, int col0, Float8 v)
    {
        if (row >= s.M) return;
        long at = cBase + (long)row * s.N;
        Store(c, s, at, col0, v.V0); Store(c, s, at, col0 + 16, v.V1);
        Store(c, s, at, col0 + 32, v.V2); Store(c, s, at, col0 + 48, v.V3);
        Store(c, s, at, col0 + 64, v.V4); Store(c, s, at, col0 + 80, v.V5);
        Store(c, s, at, col0 + 96, v.V6); Store(c, s, at, col0 + 112, v.V7);
    }

    private static void Store(ArrayView<float> c, GemmShape s, long rowAt, int col, float value)
    {
        if (col >= s.N) return;
        if (s.Accumulate != 0) c[rowAt + col] += value;
        else c[rowAt + col] = value;
    }

    private static Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> Load(Accelerator accelerator) =>
        accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulKernel);

    /// <summary>Launches C[s] (+)= op(A[s]) @ op(B[s]) for s in [0, batch) on views already on the device.</summary>
    public static void MatMul(Device device, ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB,
        ArrayView<float> c, int batch, int m, int k, int n, bool sharedB, bool accumulate)
    {
        if (batch == 0 || m == 0 || n == 0) return;
        var shape = new GemmShape
        {
            M = m, K = k, N = n,
            AStride = (long)m * k, BStride = sharedB ? 0 : (long)k * n, CStride = (long)m * n,
            TransposeA = transposeA ? 1 : 0, TransposeB = transposeB ? 1 : 0, Accumulate = accumulate ? 1 : 0,
        };
        var grid = new Index3D((n + Tile - 1) / Tile, (m + Tile - 1) / Tile, batch);
        var config = new KernelConfig(grid, new Index3D(ThreadsPerGroup, 1, 1));
        device.Kernels.Get("matmul", Load)(config, a, b, c, shape);
    }
}
