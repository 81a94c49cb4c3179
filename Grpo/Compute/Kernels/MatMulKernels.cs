// The CUDA port of Ops/MatMul.cs's product: C[s] (M, N) (+)= op(A[s]) @ op(B[s]) for every batch
// index s, op the identity or the transpose of a stored matrix (A stored (M, K) or (K, M); B stored
// (K, N) or (N, K)); B may be shared by the whole batch (stride 0). The backward products of MatMul
// are the same kernel with other transposes: dA' = dC @ B'^T, dB' = A'^T @ dC (accumulate on).
//
// Two versions side by side, as in llm.c's dev/cuda: each is checked against the CPU reference, and
// the launcher MatMul picks the fastest one the shapes allow. Both are the classic shared-memory
// tiled GEMM with a register tile: one group of 256 threads computes a 128 x 128 block of C, walking
// K 8 at a time; the group copies an (8 x 128) slice of op(A) and of op(B) into shared memory,
// k-major (a row of the slice is what the inner loop reads), with zeros past the matrix edges; each
// thread keeps an 8 x 8 register tile of C.
//
// v1 MatMulKernel: scalar loads from global and shared memory; a thread's register tile is rows
//   ty + 16 i, columns tx + 16 j (strided, so a half-warp reads 16 consecutive floats of shared
//   memory, no bank conflicts, and stores 16 consecutive floats of C). Any shapes and offsets.
//   Measured on the H200 at 4096^3: 12.3 TFLOP/s (cuBLAS fp32: 51).
// v2 MatMulF4Kernel: what shared/GPU.md measured as the next steps, both applied:
//   - 16-byte loads (ld.global.v4): the views are read as Float4 (view.Cast<Float4>()), each thread
//     fetching one Float4 of each slice; the register tile becomes rows 4 ty + i and 64 + 4 ty + i,
//     columns 4 tx + j and 64 + 4 tx + j, so shared memory is read as Float4 too (ld.shared.v4);
//   - double-buffered shared memory: the next slice is fetched into registers while the current one
//     is multiplied, then stored into the other buffer: one barrier per k-step instead of two;
//   - the inner k-loop runs to min(8, K - k0), a bound known only at run time, so ILGPU leaves it
//     rolled (fully unrolled, ILGPU schedules every load first and registers spill).
//   Needs each stored operand's contiguous dimension (K for A, N for B; M for A^T, K for B^T) a
//   multiple of 4, so every Float4 lies inside one row and batch strides stay multiples of 4, and
//   both views starting at a multiple of 4 floats; otherwise the launcher falls back to v1.
//   Expected ~36 TFLOP/s per shared/GPU.md's prototype; measured on the H200 at 4096^3: 27.9 TFLOP/s
//   (0.55x cuBLAS; v1 12.3 in the same run), 96 registers a thread (so not an occupancy limit).
// v3 MatMulLayoutKernel (MatMulLayoutKernels.cs): v2 with each operand's layout a type parameter. Measured at 4096^3: A @ B 29.2 TFLOP/s,
//   x @ W^T 29.1, A^T @ B 34.0 (v2 27.9 and 27.6 in the same run): an operand stored along k, whose
//   slice is transposed on its way into shared memory and read 32 bytes a row, is the slower side.
// v4 MatMulDeepKernel (MatMulDeepKernels.cs, the launcher's choice where Float4 loads are allowed): v3
//   with a k-step of 16. Measured at 4096^3 in the same run: A @ B 35.7 TFLOP/s (0.70x cuBLAS),
//   x @ W^T 34.2, A^T @ B 36.7; 120 to 122 registers (two groups an SM still fit).
// skinny (MatMulSkinnyKernel, the launcher's choice for x @ W^T with at most 128 rows: sampling's
//   decode steps): a warp per 8 rows x 1 column, lanes along K, shuffles to sum (MatMulSmallShapes.cs).
// v3 split-K (MatMulSplitK in MatMulSmallShapes.cs, the launcher's choice for A^T B with few output tiles and a long K, as in
//   every weight gradient): K cut into chunks run as one batched launch of v2 (or v1), then summed.
//   Measured in a training step of the small shape (GRPO_PROFILE): before it, the matmuls took about
//   53 ms of the step's 104 ms, most of it in the dW products (4 to 12 groups each walking K = 8192).
// Launched with an explicit KernelConfig (shared memory and barriers need a known group size).
// Tests: Grpo.Tests/Compute/KernelTests.cs and MatMulKernelTests.cs (vs the CPU reference on ILGPU's
// CPU accelerator), PtxCompileTests.cs; on a GPU: `grpo check --device cuda`; speed: `grpo bench --device cuda`.
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

/// <summary>Sizes and layout of one batched product; strides in elements (BStride 0 = B shared).</summary>
public struct GemmShape
{
    public int M, K, N;
    public long AStride, BStride, CStride;
    public int TransposeA, TransposeB, Accumulate;

    /// <summary>Batch strides of contiguous (M, K), (K, N) (0 when B is shared) and (M, N) blocks.</summary>
    public static GemmShape Of(int m, int k, int n, bool transposeA, bool transposeB, bool sharedB, bool accumulate) => new()
    {
        M = m, K = k, N = n,
        AStride = (long)m * k, BStride = sharedB ? 0 : (long)k * n, CStride = (long)m * n,
        TransposeA = transposeA ? 1 : 0, TransposeB = transposeB ? 1 : 0, Accumulate = accumulate ? 1 : 0,
    };
}

public static partial class MatMulKernels
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

    /// <summary>Four consecutive floats, 16 bytes: a view cast to Float4 is read with one ld.v4.</summary>
    public struct Float4
    {
        public float X, Y, Z, W;
    }

    /// <summary>v1. Grid (N / Tile, M / Tile, batch) of groups of ThreadsPerGroup threads.</summary>
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

    /// <summary>
    /// v2. Same grid and groups as v1; needs the alignment UsesVectorLoads checks. Shared memory holds
    /// two buffers of each slice, [buffer * SliceFloats + kk * Tile + row]; Float4 reads of it are
    /// 16-byte aligned because the allocation is of Float4.
    /// </summary>
    public static void MatMulF4Kernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s)
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
        long aBase = Grid.IdxZ * s.AStride, bBase = Grid.IdxZ * s.BStride, cBase = Grid.IdxZ * s.CStride;
        // A (M, K) and B^T (N, K) are contiguous along k; A^T (K, M) and B (K, N) along rows / columns.
        int aAlongK = 1 - s.TransposeA, bAlongK = s.TransposeB;

        var aNext = LoadSliceQuad(a4, aBase, aAlongK, s.M, s.K, rowBase, 0, thread);
        var bNext = LoadSliceQuad(b4, bBase, bAlongK, s.N, s.K, colBase, 0, thread);
        StoreSliceQuad(aSlices, aSliceFloats, 0, aAlongK, thread, aNext);
        StoreSliceQuad(bSlices, bSliceFloats, 0, bAlongK, thread, bNext);
        Group.Barrier();

        Float8 acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Float8 acc4 = default, acc5 = default, acc6 = default, acc7 = default;
        int buffer = 0;
        for (int k0 = 0; k0 < s.K; k0 += KStep)
        {
            bool more = k0 + KStep < s.K; // the same for the whole group, so the barrier below is safe
            if (more)
            {
                aNext = LoadSliceQuad(a4, aBase, aAlongK, s.M, s.K, rowBase, k0 + KStep, thread);
                bNext = LoadSliceQuad(b4, bBase, bAlongK, s.N, s.K, colBase, k0 + KStep, thread);
            }

            int steps = s.K - k0 < KStep ? s.K - k0 : KStep; // a run-time bound keeps this loop rolled
            int quadBase = buffer * SliceFloats / 4;
            for (int kk = 0; kk < steps; kk++)
            {
                int rowQuad = quadBase + kk * Tile / 4 + ty, colQuad = quadBase + kk * Tile / 4 + tx;
                Float4 aLow = aSlices[rowQuad], aHigh = aSlices[rowQuad + 16];  // rows 4 ty + i, 64 + 4 ty + i
                Float4 bLow = bSlices[colQuad], bHigh = bSlices[colQuad + 16];  // columns 4 tx + j, 64 + 4 tx + j
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

            // The other buffer was last read before the previous barrier: safe to overwrite now.
            if (more)
            {
                StoreSliceQuad(aSlices, aSliceFloats, 1 - buffer, aAlongK, thread, aNext);
                StoreSliceQuad(bSlices, bSliceFloats, 1 - buffer, bAlongK, thread, bNext);
            }
            Group.Barrier();
            buffer = 1 - buffer;
        }

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

    /// <summary>Floats in one (KStep x Tile) slice of one operand.</summary>
    public const int SliceFloats = KStep * Tile;

    /// <summary>
    /// This thread's Float4 of the slice [k0, k0 + KStep) of a stored operand whose other dimension
    /// has extent rows (M or N; the tile starts at tileBase), zeros past the edges. Along k: the
    /// operand is stored (rows, K), thread t takes row t / 2, k0 + 4 (t % 2) .. + 3. Otherwise it is
    /// stored (K, rows), thread t takes k0 + t / 32, rows 4 (t % 32) .. + 3. A Float4 is wholly
    /// inside or wholly outside because the contiguous extent is a multiple of 4.
    /// </summary>
    private static Float4 LoadSliceQuad(ArrayView<Float4> x, long xBase, int alongK, int rows, int kSize,
        int tileBase, int k0, int thread)
    {
        int row, k;
        if (alongK != 0) { row = tileBase + thread / 2; k = k0 + 4 * (thread % 2); }
        else { k = k0 + thread / 32; row = tileBase + 4 * (thread % 32); }
        if (row >= rows || k >= kSize) return default;
        long at = alongK != 0 ? xBase + (long)row * kSize + k : xBase + (long)k * rows + row;
        return x[at / 4];
    }

    /// <summary>Writes what LoadSliceQuad fetched into slice buffer `buffer`, k-major (transposing it when it ran along k).</summary>
    private static void StoreSliceQuad(ArrayView<Float4> slices, ArrayView<float> sliceFloats, int buffer, int alongK,
        int thread, Float4 v)
    {
        int at = buffer * SliceFloats;
        if (alongK != 0)
        {
            int row = thread / 2, kk = 4 * (thread % 2);
            sliceFloats[at + kk * Tile + row] = v.X;
            sliceFloats[at + (kk + 1) * Tile + row] = v.Y;
            sliceFloats[at + (kk + 2) * Tile + row] = v.Z;
            sliceFloats[at + (kk + 3) * Tile + row] = v.W;
        }
        else
        {
            slices[(at + thread / 32 * Tile + 4 * (thread % 32)) / 4] = v;
        }
    }

    /// <summary>Writes (or adds) one v2 register row to C[row, col0 + j] and C[row, col0 + 64 + j], j &lt; 4.</summary>
    private static void StoreQuadRow(ArrayView<float> c, GemmShape s, long cBase, int row, int col0, Float8 v)
    {
        if (row >= s.M) return;
        long at = cBase + (long)row * s.N;
        Store(c, s, at, col0, v.V0); Store(c, s, at, col0 + 1, v.V1);
        Store(c, s, at, col0 + 2, v.V2); Store(c, s, at, col0 + 3, v.V3);
        Store(c, s, at, col0 + 64, v.V4); Store(c, s, at, col0 + 65, v.V5);
        Store(c, s, at, col0 + 66, v.V6); Store(c, s, at, col0 + 67, v.V7);
    }

    private static Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> LoadV1(Accelerator accelerator) =>
        accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulKernel);

    private static Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> LoadV2(Accelerator accelerator) =>
        accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(MatMulF4Kernel);

    /// <summary>
    /// Whether MatMul runs v2 for these operands: each stored operand's contiguous dimension a multiple
    /// of 4 (then so are the batch strides m k and k n) and both views starting at a multiple of 4 floats.
    /// </summary>
    public static bool UsesVectorLoads(ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB, int m, int k, int n) =>
        (transposeA ? m : k) % 4 == 0 && (transposeB ? k : n) % 4 == 0 && StartsAligned(a) && StartsAligned(b);

    /// <summary>
    /// The view's offset into its buffer is a multiple of 16 bytes (buffers themselves start aligned:
    /// cudaMalloc gives 256 bytes). Cast&lt;Float4&gt; would otherwise round the offset down.
    /// </summary>
    private static bool StartsAligned(ArrayView<float> view) => ((IContiguousArrayView)view).IndexInBytes % 16 == 0;

    /// <summary>Launches C[s] (+)= op(A[s]) @ op(B[s]) for s in [0, batch) on views already on the device, with v2 where UsesVectorLoads allows, else v1.</summary>
    public static void MatMul(Device device, ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB,
        ArrayView<float> c, int batch, int m, int k, int n, bool sharedB, bool accumulate)
    {
        int splits = SplitsFor(device, transposeA, transposeB, batch, m, k, n);
        if (splits > 1)
        {
            MatMulSplitK(device, a, b, c, m, k, n, accumulate, splits);
            return;
        }
        if (UsesSkinnyKernel(transposeA, transposeB, batch, m) && n > 0 && m > 0)
        {
            LaunchSkinny(device, a, b, c, m, k, n, accumulate);
            return;
        }
        int version = UsesVectorLoads(a, transposeA, b, transposeB, m, k, n) ? 4 : 1;
        Launch(device, version, a, transposeA, b, transposeB, c, batch, m, k, n, sharedB, accumulate);
    }

    /// <summary>MatMul with v2 (needs what UsesVectorLoads checks): the bench's step from v2 to v3.</summary>
    public static void MatMulV2(Device device, ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB,
        ArrayView<float> c, int batch, int m, int k, int n, bool sharedB, bool accumulate)
    {
        if (!UsesVectorLoads(a, transposeA, b, transposeB, m, k, n))
            throw new ArgumentException($"matmul v2: ({m}, {k}) x ({k}, {n}) with these transposes cannot take Float4 loads");
        Launch(device, 2, a, transposeA, b, transposeB, c, batch, m, k, n, sharedB, accumulate);
    }

    /// <summary>MatMul with v1 whatever the shapes: for the benchmark's step from v1 to v2, and tests.</summary>
    public static void MatMulV1(Device device, ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB,
        ArrayView<float> c, int batch, int m, int k, int n, bool sharedB, bool accumulate) =>
        Launch(device, 1, a, transposeA, b, transposeB, c, batch, m, k, n, sharedB, accumulate);

    private static void Launch(Device device, int version, ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB,
        ArrayView<float> c, int batch, int m, int k, int n, bool sharedB, bool accumulate)
    {
        if (batch == 0 || m == 0 || n == 0) return;
        var grid = new Index3D((n + Tile - 1) / Tile, (m + Tile - 1) / Tile, batch);
        var config = new KernelConfig(grid, new Index3D(ThreadsPerGroup, 1, 1));
        var kernel = version switch
        {
            4 => DeepKernel(device, transposeA, transposeB),
            3 => LayoutKernel(device, transposeA, transposeB),
            2 => device.Kernels.Get("matmul_f4", LoadV2),
            _ => device.Kernels.Get("matmul", LoadV1),
        };
        kernel(config, a, b, c, GemmShape.Of(m, k, n, transposeA, transposeB, sharedB, accumulate));
    }
}
