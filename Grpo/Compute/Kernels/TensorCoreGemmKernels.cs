// A bf16 tensor-core GEMM for CUDA: C (M, N) = A (M, K) @ B^T, with B stored as Bt (N, K), every
// input a bf16 bit pattern (ushort: System.Half does not compile in kernels) and every sum in fp32.
// Bt (N, K) is what `mma ... .row.col` wants (both operands contiguous along k) and what a linear
// layer's weight already is (x @ W^T). Also the fp32 -> bf16 conversion (round to nearest even) that
// feeds it, usable on the host (ToBf16) and as a kernel (ToBf16Kernel).
//
// Inline PTX through ILGPU's CudaAsm, the recipe shared/GPU.md measured in a prototype (419 TFLOP/s):
// - the block tile is 128 x 128 of C, walked along K 64 at a time; 256 threads = 8 warps as 2 (rows)
//   x 4 (columns), each warp 64 x 32 of C = 4 x 4 tiles of `mma.sync.aligned.m16n8k16.row.col.f32.
//   bf16.bf16.f32` (16 x 8 outputs, k 16), so a thread holds 64 fp32 accumulators;
// - accumulators and fragments are PTX registers declared by name once (`.reg .f32 acc<64>`), and
//   every asm string names them; only addresses go in as operands. (`Ref<>` operands live in local
//   memory: 45x slower, GPU.md.) One asm string (MmaStep) does a k-step of 16 for the warp: four
//   `ldmatrix.x4` of A (16 x 16 each), two of Bt (2 x 8 columns x 16), sixteen mma;
// - shared memory is the dynamic allocation, reached in asm as `__dyn_shared_alloca` (ILGPU declares
//   it because the kernel references SharedMemory.GetDynamic); a stage holds the A tile (128 rows of 64
//   bf16 = 128 bytes) then the Bt tile, 32 KB. Row r's 16-byte chunk c sits at chunk c ^ (r % 8), so the
//   8 rows one ldmatrix phase reads fall in 8 different bank groups (unswizzled they hit the same 4
//   banks, an 8-way conflict); the copies write 16 bytes a thread, conflict free either way.
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16"): lane l = 4 g + q holds A rows g and
// g + 8, k pairs 2q and 8 + 2q; Bt row (column of C) g, k pairs 2q and 8 + 2q; C rows g and g + 8,
// columns 2q, 2q + 1. ldmatrix.x4 hands matrix j (lanes 8j .. 8j + 7 give its row addresses) to register j.
//
// v1 TensorCoreGemmV1Kernel: one stage. Each k-tile: every thread loads 8 chunks of 16 bytes from
//   global memory into registers (ld.global.v4), stores them to shared memory, barrier, 4 MmaSteps,
//   barrier. Loads and math do not overlap. Measured on the H200 at 4096^3: 176.5 TFLOP/s.
// v2 TensorCoreGemmKernel: what changed: a 3-stage `cp.async` pipeline (sm_80's asynchronous copy,
//   global -> shared without registers). Tiles kt + 1 and kt + 2 are in flight while tile kt is
//   multiplied; one barrier per k-tile (it also tells every warp that the stage about to be refilled
//   has been read). 96 KB of shared memory: the launcher raises the kernel's limit with
//   cuFuncSetAttribute (above 48 KB a launch fails otherwise). GPU.md's prototype: 419 TFLOP/s.
//   Measured on the H200 at 4096^3: 243.5 TFLOP/s (cuBLAS bf16 in the same run: 751.7, so 0.32x). Split-K
//   (grid.Z chunks of K into partial products, Bf16MatMulKernels sums them) serves weight gradients.
// Shapes: M and N multiples of 128, K a multiple of 64, every view starting 16-byte aligned; the
// launcher throws ArgumentException otherwise (no edge handling: this is the fast path, not the
// general matmul, which stays MatMulKernels). CUDA only (inline PTX): NotSupportedException elsewhere.
// Op.MatMul with MatMulPrecision.Bf16 reaches it through Bf16MatMulKernels.cs, which pads any shape to
// these tiles, lays the operands out as A and Bt, and copies the result back.
// Tests: Grpo.Tests/Compute/TensorCoreGemmTests.cs (PTX text, bf16 rounding), TensorCoreLayoutTests.cs (these
// offsets driving a CPU simulation of ldmatrix and mma: the product comes out exact), PtxCompileTests.cs;
// on a GPU: `grpo check --device cuda` (vs the CPU on the same bf16 inputs); speed: `grpo bench --device cuda`.
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Grpo.Compute.Kernels;

/// <summary>Device addresses (bytes) of A (M, K), Bt (N, K) bf16 and C (M, N) fp32, and the sizes.</summary>
public struct TensorCoreGemmArgs
{
    public long A, Bt, C;
    public int M, N, K;
    /// <summary>Split-K (v2 only): grid.Z chunks of K / KSplits each, chunk z into C + z M N floats; 0 or 1 = none.</summary>
    public int KSplits;
}

public static class TensorCoreGemmKernels
{
    public const int Tile = 128;
    public const int KTile = 64;
    public const int ThreadsPerGroup = 256;
    public const int Stages = 3;
    /// <summary>Bytes of one stage: the A tile then the Bt tile, each 128 rows of 64 bf16.</summary>
    public const int StageBytes = 2 * Tile * KTile * 2;
    /// <summary>Bytes of one operand's tile in a stage (Bt's starts this far after A's).</summary>
    public const int OperandBytes = Tile * KTile * 2;

    private const string DeclareRegisters =
        ".reg .f32 acc<64>; .reg .b32 fa<16>; .reg .b32 fb<8>;";

    private const string ZeroAccumulators = """
        mov.f32 acc0, 0f00000000; mov.f32 acc1, 0f00000000; mov.f32 acc2, 0f00000000; mov.f32 acc3, 0f00000000;
        mov.f32 acc4, 0f00000000; mov.f32 acc5, 0f00000000; mov.f32 acc6, 0f00000000; mov.f32 acc7, 0f00000000;
        mov.f32 acc8, 0f00000000; mov.f32 acc9, 0f00000000; mov.f32 acc10, 0f00000000; mov.f32 acc11, 0f00000000;
        mov.f32 acc12, 0f00000000; mov.f32 acc13, 0f00000000; mov.f32 acc14, 0f00000000; mov.f32 acc15, 0f00000000;
        mov.f32 acc16, 0f00000000; mov.f32 acc17, 0f00000000; mov.f32 acc18, 0f00000000; mov.f32 acc19, 0f00000000;
        mov.f32 acc20, 0f00000000; mov.f32 acc21, 0f00000000; mov.f32 acc22, 0f00000000; mov.f32 acc23, 0f00000000;
        mov.f32 acc24, 0f00000000; mov.f32 acc25, 0f00000000; mov.f32 acc26, 0f00000000; mov.f32 acc27, 0f00000000;
        mov.f32 acc28, 0f00000000; mov.f32 acc29, 0f00000000; mov.f32 acc30, 0f00000000; mov.f32 acc31, 0f00000000;
        mov.f32 acc32, 0f00000000; mov.f32 acc33, 0f00000000; mov.f32 acc34, 0f00000000; mov.f32 acc35, 0f00000000;
        mov.f32 acc36, 0f00000000; mov.f32 acc37, 0f00000000; mov.f32 acc38, 0f00000000; mov.f32 acc39, 0f00000000;
        mov.f32 acc40, 0f00000000; mov.f32 acc41, 0f00000000; mov.f32 acc42, 0f00000000; mov.f32 acc43, 0f00000000;
        mov.f32 acc44, 0f00000000; mov.f32 acc45, 0f00000000; mov.f32 acc46, 0f00000000; mov.f32 acc47, 0f00000000;
        mov.f32 acc48, 0f00000000; mov.f32 acc49, 0f00000000; mov.f32 acc50, 0f00000000; mov.f32 acc51, 0f00000000;
        mov.f32 acc52, 0f00000000; mov.f32 acc53, 0f00000000; mov.f32 acc54, 0f00000000; mov.f32 acc55, 0f00000000;
        mov.f32 acc56, 0f00000000; mov.f32 acc57, 0f00000000; mov.f32 acc58, 0f00000000; mov.f32 acc59, 0f00000000;
        mov.f32 acc60, 0f00000000; mov.f32 acc61, 0f00000000; mov.f32 acc62, 0f00000000; mov.f32 acc63, 0f00000000;
        """;

    /// <summary>
    /// One k-step of 16 for a warp's 64 x 32 of C. Operands: %0..%3 the shared addresses this lane gives
    /// ldmatrix for A's four 16-row tiles, %4, %5 those for Bt's two 16-row pairs of 8-column tiles.
    /// fa[4 mi .. 4 mi + 3] is A tile mi; fb[2 ni], fb[2 ni + 1] is column tile ni; acc[4 (4 mi + ni) ..] its C.
    /// </summary>
    private const string MmaStep = """
        ldmatrix.sync.aligned.m8n8.x4.shared.b16 {fa0,fa1,fa2,fa3}, [%0];
        ldmatrix.sync.aligned.m8n8.x4.shared.b16 {fa4,fa5,fa6,fa7}, [%1];
        ldmatrix.sync.aligned.m8n8.x4.shared.b16 {fa8,fa9,fa10,fa11}, [%2];
        ldmatrix.sync.aligned.m8n8.x4.shared.b16 {fa12,fa13,fa14,fa15}, [%3];
        ldmatrix.sync.aligned.m8n8.x4.shared.b16 {fb0,fb1,fb2,fb3}, [%4];
        ldmatrix.sync.aligned.m8n8.x4.shared.b16 {fb4,fb5,fb6,fb7}, [%5];
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc0,acc1,acc2,acc3}, {fa0,fa1,fa2,fa3}, {fb0,fb1}, {acc0,acc1,acc2,acc3};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc4,acc5,acc6,acc7}, {fa0,fa1,fa2,fa3}, {fb2,fb3}, {acc4,acc5,acc6,acc7};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc8,acc9,acc10,acc11}, {fa0,fa1,fa2,fa3}, {fb4,fb5}, {acc8,acc9,acc10,acc11};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc12,acc13,acc14,acc15}, {fa0,fa1,fa2,fa3}, {fb6,fb7}, {acc12,acc13,acc14,acc15};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc16,acc17,acc18,acc19}, {fa4,fa5,fa6,fa7}, {fb0,fb1}, {acc16,acc17,acc18,acc19};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc20,acc21,acc22,acc23}, {fa4,fa5,fa6,fa7}, {fb2,fb3}, {acc20,acc21,acc22,acc23};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc24,acc25,acc26,acc27}, {fa4,fa5,fa6,fa7}, {fb4,fb5}, {acc24,acc25,acc26,acc27};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc28,acc29,acc30,acc31}, {fa4,fa5,fa6,fa7}, {fb6,fb7}, {acc28,acc29,acc30,acc31};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc32,acc33,acc34,acc35}, {fa8,fa9,fa10,fa11}, {fb0,fb1}, {acc32,acc33,acc34,acc35};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc36,acc37,acc38,acc39}, {fa8,fa9,fa10,fa11}, {fb2,fb3}, {acc36,acc37,acc38,acc39};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc40,acc41,acc42,acc43}, {fa8,fa9,fa10,fa11}, {fb4,fb5}, {acc40,acc41,acc42,acc43};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc44,acc45,acc46,acc47}, {fa8,fa9,fa10,fa11}, {fb6,fb7}, {acc44,acc45,acc46,acc47};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc48,acc49,acc50,acc51}, {fa12,fa13,fa14,fa15}, {fb0,fb1}, {acc48,acc49,acc50,acc51};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc52,acc53,acc54,acc55}, {fa12,fa13,fa14,fa15}, {fb2,fb3}, {acc52,acc53,acc54,acc55};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc56,acc57,acc58,acc59}, {fa12,fa13,fa14,fa15}, {fb4,fb5}, {acc56,acc57,acc58,acc59};
        mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {acc60,acc61,acc62,acc63}, {fa12,fa13,fa14,fa15}, {fb6,fb7}, {acc60,acc61,acc62,acc63};
        """;

    // The C stores of A tile mi: %0 = &C[row g, first column 2q of the warp], %1 = the same 8 rows down;
    // column tile ni is 8 floats = 32 bytes further.
    private const string StoreTile0 =
        "st.global.v2.f32 [%0], {acc0,acc1}; st.global.v2.f32 [%0+32], {acc4,acc5}; st.global.v2.f32 [%0+64], {acc8,acc9}; st.global.v2.f32 [%0+96], {acc12,acc13}; " +
        "st.global.v2.f32 [%1], {acc2,acc3}; st.global.v2.f32 [%1+32], {acc6,acc7}; st.global.v2.f32 [%1+64], {acc10,acc11}; st.global.v2.f32 [%1+96], {acc14,acc15};";
    private const string StoreTile1 =
        "st.global.v2.f32 [%0], {acc16,acc17}; st.global.v2.f32 [%0+32], {acc20,acc21}; st.global.v2.f32 [%0+64], {acc24,acc25}; st.global.v2.f32 [%0+96], {acc28,acc29}; " +
        "st.global.v2.f32 [%1], {acc18,acc19}; st.global.v2.f32 [%1+32], {acc22,acc23}; st.global.v2.f32 [%1+64], {acc26,acc27}; st.global.v2.f32 [%1+96], {acc30,acc31};";
    private const string StoreTile2 =
        "st.global.v2.f32 [%0], {acc32,acc33}; st.global.v2.f32 [%0+32], {acc36,acc37}; st.global.v2.f32 [%0+64], {acc40,acc41}; st.global.v2.f32 [%0+96], {acc44,acc45}; " +
        "st.global.v2.f32 [%1], {acc34,acc35}; st.global.v2.f32 [%1+32], {acc38,acc39}; st.global.v2.f32 [%1+64], {acc42,acc43}; st.global.v2.f32 [%1+96], {acc46,acc47};";
    private const string StoreTile3 =
        "st.global.v2.f32 [%0], {acc48,acc49}; st.global.v2.f32 [%0+32], {acc52,acc53}; st.global.v2.f32 [%0+64], {acc56,acc57}; st.global.v2.f32 [%0+96], {acc60,acc61}; " +
        "st.global.v2.f32 [%1], {acc50,acc51}; st.global.v2.f32 [%1+32], {acc54,acc55}; st.global.v2.f32 [%1+64], {acc58,acc59}; st.global.v2.f32 [%1+96], {acc62,acc63};";

    // v1's copy of a k-tile: %0..%3 this thread's 4 chunks of A (rows t/8 + 32 i), %4..%7 of Bt, loaded
    // into registers; then stored at %0 (A's swizzled chunk in shared memory; chunk i is 32 rows = 4096
    // bytes further) and %1 (the same for Bt).
    private const string LoadChunks = """
        ld.global.v4.b32 {ldv0,ldv1,ldv2,ldv3}, [%0]; ld.global.v4.b32 {ldv4,ldv5,ldv6,ldv7}, [%1];
        ld.global.v4.b32 {ldv8,ldv9,ldv10,ldv11}, [%2]; ld.global.v4.b32 {ldv12,ldv13,ldv14,ldv15}, [%3];
        ld.global.v4.b32 {ldv16,ldv17,ldv18,ldv19}, [%4]; ld.global.v4.b32 {ldv20,ldv21,ldv22,ldv23}, [%5];
        ld.global.v4.b32 {ldv24,ldv25,ldv26,ldv27}, [%6]; ld.global.v4.b32 {ldv28,ldv29,ldv30,ldv31}, [%7];
        """;
    private const string StoreChunks = """
        st.shared.v4.b32 [%0], {ldv0,ldv1,ldv2,ldv3}; st.shared.v4.b32 [%0+4096], {ldv4,ldv5,ldv6,ldv7};
        st.shared.v4.b32 [%0+8192], {ldv8,ldv9,ldv10,ldv11}; st.shared.v4.b32 [%0+12288], {ldv12,ldv13,ldv14,ldv15};
        st.shared.v4.b32 [%1], {ldv16,ldv17,ldv18,ldv19}; st.shared.v4.b32 [%1+4096], {ldv20,ldv21,ldv22,ldv23};
        st.shared.v4.b32 [%1+8192], {ldv24,ldv25,ldv26,ldv27}; st.shared.v4.b32 [%1+12288], {ldv28,ldv29,ldv30,ldv31};
        """;

    // v2's copy of one operand's 4 chunks: %0 the first swizzled shared address, %1..%4 the global ones.
    private const string CopyChunksAsync = """
        cp.async.cg.shared.global [%0], [%1], 16; cp.async.cg.shared.global [%0+4096], [%2], 16;
        cp.async.cg.shared.global [%0+8192], [%3], 16; cp.async.cg.shared.global [%0+12288], [%4], 16;
        """;

    /// <summary>Where this thread's pieces of a tile are: copies, ldmatrix rows and C, all in bytes.</summary>
    internal struct ThreadLayout
    {
        public uint SharedBase;      // __dyn_shared_alloca as a shared-window address
        public uint CopyOffset;      // this thread's first 16-byte chunk in an operand's tile (swizzled)
        public long AChunk, BChunk;  // its first chunk of A and Bt in global memory at k = 0
        public long ChunkRowStride;  // 32 rows further (chunk i + 1)
        public uint ARow, BRow;      // offset of the row this lane gives ldmatrix (A tile 0, Bt pair 0)
        public uint AHalf, BHalf;    // which 8-wide k chunk of the k-step of 16 it gives (0 or 1)
        public uint Lane7;           // lane % 8 = row % 8: the swizzle
    }

    /// <summary>Thread `thread`'s layout in the block tile at (rowBase, columnBase); SharedBase 0. Pure, so
    /// TensorCoreLayoutTests can simulate ldmatrix and mma on the CPU over exactly these offsets.</summary>
    internal static ThreadLayout LayoutOf(int thread, int rowBase, int columnBase, TensorCoreGemmArgs s)
    {
        int warp = thread / 32, lane = thread % 32;
        int warpRow = warp / 4 * 64, warpColumn = warp % 4 * 32;
        int copyRow = thread / 8, copyChunk = thread % 8;
        return new ThreadLayout
        {
            CopyOffset = (uint)(copyRow * 128 + (copyChunk ^ (copyRow % 8)) * 16),
            AChunk = s.A + ((long)(rowBase + copyRow) * s.K + copyChunk * 8) * 2,
            BChunk = s.Bt + ((long)(columnBase + copyRow) * s.K + copyChunk * 8) * 2,
            ChunkRowStride = 32L * s.K * 2,
            ARow = (uint)((warpRow + lane % 16) * 128),
            BRow = (uint)((warpColumn + lane % 8 + 8 * (lane / 16)) * 128),
            AHalf = (uint)(lane / 16),
            BHalf = (uint)(lane / 8 % 2),
            Lane7 = (uint)(lane % 8),
        };
    }

    private static ThreadLayout Layout(TensorCoreGemmArgs s)
    {
        var layout = LayoutOf(Group.IdxX, Grid.IdxY * Tile, Grid.IdxX * Tile, s);
        long chunkBytes = (long)Grid.IdxZ * (s.K / Splits(s)) * 2;   // split-K: this group's chunk of K
        layout.AChunk += chunkBytes;
        layout.BChunk += chunkBytes;
        uint sharedBase;
        CudaAsm.Emit("mov.u32 %0, __dyn_shared_alloca;", out sharedBase);
        layout.SharedBase = sharedBase;
        return layout;
    }

    /// <summary>MmaStep's six ldmatrix addresses for k-step `step` (0..3) of the tile at stage: A tiles 0..3, Bt pairs 0, 1.</summary>
    internal static (uint A0, uint A1, uint A2, uint A3, uint B0, uint B1) LdmatrixAddresses(ThreadLayout t, uint stage, uint step)
    {
        uint a = stage + t.ARow + ((2 * step + t.AHalf) ^ t.Lane7) * 16;
        uint b = stage + OperandBytes + t.BRow + ((2 * step + t.BHalf) ^ t.Lane7) * 16;
        return (a, a + 2048, a + 4096, a + 6144, b, b + 2048);
    }

    /// <summary>The four MmaSteps of one k-tile held in shared memory at stage (byte address).</summary>
    private static void MultiplyTile(ThreadLayout t, uint stage)
    {
        for (uint step = 0; step < KTile / 16; step++)
        {
            var (a0, a1, a2, a3, b0, b1) = LdmatrixAddresses(t, stage, step);
            CudaAsm.Emit(MmaStep, a0, a1, a2, a3, b0, b1);
        }
    }

    /// <summary>Row and column of C of this thread's acc0 (A tile mi adds 16 rows, column tile ni 8 columns; acc2, acc3 are 8 rows down).</summary>
    internal static (int Row, int Column) StoreOrigin(int thread, int rowBase, int columnBase)
    {
        int warp = thread / 32, lane = thread % 32;
        return (rowBase + warp / 4 * 64 + lane / 4, columnBase + warp % 4 * 32 + 2 * (lane % 4));
    }

    private static int Splits(TensorCoreGemmArgs s) => s.KSplits > 1 ? s.KSplits : 1;

    /// <summary>Writes the warp's 64 x 32 of C (of split Grid.IdxZ's partial product) from the accumulators.</summary>
    private static void StoreC(TensorCoreGemmArgs s)
    {
        var (row, column) = StoreOrigin(Group.IdxX, Grid.IdxY * Tile, Grid.IdxX * Tile);
        long at = s.C + ((long)Grid.IdxZ * s.M * s.N + (long)row * s.N + column) * 4, tileRows = 16L * s.N * 4, eightRows = 8L * s.N * 4;
        CudaAsm.Emit(StoreTile0, at, at + eightRows);
        CudaAsm.Emit(StoreTile1, at + tileRows, at + tileRows + eightRows);
        CudaAsm.Emit(StoreTile2, at + 2 * tileRows, at + 2 * tileRows + eightRows);
        CudaAsm.Emit(StoreTile3, at + 3 * tileRows, at + 3 * tileRows + eightRows);
    }

    /// <summary>v1. Grid (N / 128, M / 128), groups of 256, StageBytes of dynamic shared memory.</summary>
    public static void TensorCoreGemmV1Kernel(TensorCoreGemmArgs s)
    {
        var shared = SharedMemory.GetDynamic<byte>();
        if (shared.Length < StageBytes) return; // keeps the dynamic allocation (and its symbol) in the PTX
        CudaAsm.Emit(DeclareRegisters + " .reg .b32 ldv<32>;");
        CudaAsm.Emit(ZeroAccumulators);
        var t = Layout(s);
        long a = t.AChunk, b = t.BChunk, rows = t.ChunkRowStride;
        for (int k0 = 0; k0 < s.K; k0 += KTile)
        {
            CudaAsm.Emit(LoadChunks, a, a + rows, a + 2 * rows, a + 3 * rows, b, b + rows, b + 2 * rows, b + 3 * rows);
            CudaAsm.Emit(StoreChunks, t.SharedBase + t.CopyOffset, t.SharedBase + OperandBytes + t.CopyOffset);
            Group.Barrier();
            MultiplyTile(t, t.SharedBase);
            Group.Barrier();
            a += KTile * 2;
            b += KTile * 2;
        }
        StoreC(s);
    }

    /// <summary>v2. Grid (N / 128, M / 128), groups of 256, Stages * StageBytes of dynamic shared memory.</summary>
    public static void TensorCoreGemmKernel(TensorCoreGemmArgs s)
    {
        var shared = SharedMemory.GetDynamic<byte>();
        if (shared.Length < Stages * StageBytes) return; // keeps the dynamic allocation (and its symbol) in the PTX
        CudaAsm.Emit(DeclareRegisters);
        CudaAsm.Emit(ZeroAccumulators);
        var t = Layout(s);
        int kTiles = s.K / Splits(s) / KTile;
        long rows = t.ChunkRowStride;

        // Prologue: tiles 0 .. Stages - 2 in flight, one commit group each (empty past the end).
        for (int kt = 0; kt < Stages - 1; kt++)
        {
            if (kt < kTiles) CopyTileAsync(t, (uint)kt, kt, rows);
            CudaAsm.Emit("cp.async.commit_group;");
        }

        uint computeStage = 0, loadStage = Stages - 1;
        for (int kt = 0; kt < kTiles; kt++)
        {
            // Groups committed so far: Stages - 1 + kt; tile kt's is complete when at most Stages - 2 are pending.
            CudaAsm.Emit("cp.async.wait_group 1;");
            Group.Barrier(); // every thread's part of tile kt has landed; every warp is done with tile kt - 1
            int next = kt + Stages - 1;
            if (next < kTiles) CopyTileAsync(t, loadStage, next, rows);
            CudaAsm.Emit("cp.async.commit_group;");
            MultiplyTile(t, t.SharedBase + computeStage * StageBytes);
            computeStage = computeStage == Stages - 1 ? 0 : computeStage + 1;
            loadStage = loadStage == Stages - 1 ? 0 : loadStage + 1;
        }
        StoreC(s);
    }

    /// <summary>Starts the asynchronous copy of k-tile kt of A and Bt into stage (this thread's 8 chunks).</summary>
    private static void CopyTileAsync(ThreadLayout t, uint stage, int kt, long rows)
    {
        uint sharedA = t.SharedBase + stage * StageBytes + t.CopyOffset;
        long a = t.AChunk + kt * KTile * 2, b = t.BChunk + kt * KTile * 2;
        CudaAsm.Emit(CopyChunksAsync, sharedA, a, a + rows, a + 2 * rows, a + 3 * rows);
        CudaAsm.Emit(CopyChunksAsync, sharedA + OperandBytes, b, b + rows, b + 2 * rows, b + 3 * rows);
    }

    [DllImport("libcuda.so.1", EntryPoint = "cuFuncSetAttribute")]
    private static extern int CuFuncSetAttribute(IntPtr function, int attribute, int value);
    private const int MaxDynamicSharedSizeBytes = 8;      // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    private const int PreferredSharedMemoryCarveout = 9;  // CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT

    /// <summary>Loads a GEMM kernel and lets it use sharedBytes of dynamic shared memory (the default limit is 48 KB).</summary>
    private static Action<KernelConfig, TensorCoreGemmArgs> Load(Accelerator accelerator, Action<TensorCoreGemmArgs> kernel, int sharedBytes)
    {
        var launch = accelerator.LoadStreamKernel(kernel);
        var function = ((CudaKernel)launch.GetKernel()).FunctionPtr;
        accelerator.Bind();
        int status = CuFuncSetAttribute(function, MaxDynamicSharedSizeBytes, sharedBytes);
        if (status != 0)
            throw new InvalidOperationException($"cuFuncSetAttribute(max dynamic shared memory, {sharedBytes}) failed with CUDA error {status}");
        CuFuncSetAttribute(function, PreferredSharedMemoryCarveout, 100); // a hint: as much shared memory as L1 allows
        return launch;
    }

    /// <summary>
    /// C (M, N) = A (M, K) @ Bt (N, K)^T on device views, bf16 in (ushort bit patterns), fp32 out; v2 (cp.async
    /// pipeline) unless pipelined is false (v1). Throws ArgumentException for shapes or alignment it does not
    /// handle (shapes are checked first, on any device) and NotSupportedException on anything but CUDA.
    /// </summary>
    public static void Gemm(Device device, ArrayView<ushort> a, ArrayView<ushort> bt, ArrayView<float> c, int m, int n, int k,
        bool pipelined = true, int kSplits = 1)
    {
        if (m <= 0 || n <= 0 || k <= 0 || m % Tile != 0 || n % Tile != 0 || k % KTile != 0)
            throw new ArgumentException($"tensor-core GEMM needs M and N multiples of {Tile} and K a multiple of {KTile}, got M {m}, N {n}, K {k}");
        if (kSplits < 1 || k / KTile % kSplits != 0 || (kSplits > 1 && !pipelined))
            throw new ArgumentException($"tensor-core GEMM: {kSplits} splits of K {k} (whole k-tiles each, v2 only)");
        if (a.Length < (long)m * k || bt.Length < (long)n * k || c.Length < (long)kSplits * m * n)
            throw new ArgumentException($"tensor-core GEMM: views of {a.Length}, {bt.Length}, {c.Length} elements are too short for M {m}, N {n}, K {k}");
        if (device.Kind != DeviceKind.Cuda)
            throw new NotSupportedException($"the tensor-core GEMM is inline PTX and runs only on CUDA, not on {device.Name}");
        var args = new TensorCoreGemmArgs
        {
            A = Address(a, "A"), Bt = Address(bt, "Bt"), C = Address(c, "C"), M = m, N = n, K = k, KSplits = kSplits,
        };
        int sharedBytes = pipelined ? Stages * StageBytes : StageBytes;
        var kernel = pipelined
            ? device.Kernels.Get("tensor_core_gemm", acc => Load(acc, TensorCoreGemmKernel, sharedBytes))
            : device.Kernels.Get("tensor_core_gemm_v1", acc => Load(acc, TensorCoreGemmV1Kernel, sharedBytes));
        var config = new KernelConfig(new Index3D(n / Tile, m / Tile, kSplits), new Index3D(ThreadsPerGroup, 1, 1),
            SharedMemoryConfig.RequestDynamic<byte>(sharedBytes));
        kernel(config, args);
    }

    /// <summary>The device address of a view's first element; it must be 16-byte aligned (cp.async and ld.v4 move 16 bytes).</summary>
    private static long Address<T>(ArrayView<T> view, string name) where T : unmanaged
    {
        long address = view.LoadEffectiveAddressAsPtr().ToInt64();
        if (address % 16 != 0)
            throw new ArgumentException($"tensor-core GEMM: {name} starts at {address:x}, not a multiple of 16 bytes");
        return address;
    }

    /// <summary>y = bf16(x), element by element, on the device.</summary>
    public static void ToBf16(Device device, ArrayView<float> x, ArrayView<ushort> y)
    {
        if (y.Length < x.Length) throw new ArgumentException($"ToBf16: y has {y.Length} elements, x {x.Length}");
        if (x.Length == 0) return;
        var kernel = device.Kernels.Get("to_bf16", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>>(ToBf16Kernel));
        kernel((int)x.Length, x, y);
    }

    /// <summary>y[i] = x[i] rounded to bf16 (nearest, ties to even), as its bit pattern.</summary>
    public static void ToBf16Kernel(Index1D i, ArrayView<float> x, ArrayView<ushort> y) => y[i] = ToBf16(x[i]);

    /// <summary>
    /// The bf16 nearest to x, ties to even: bf16 is fp32's top 16 bits, so add half of the dropped 16 bits'
    /// range minus one (0x7FFF), plus one more when the kept part is odd, and truncate. NaN stays a (quiet) NaN;
    /// values past bf16's largest finite round to infinity, as IEEE rounding does.
    /// </summary>
    public static ushort ToBf16(float x)
    {
        uint bits = Interop.FloatAsInt(x);
        if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((bits >> 16) | 0x0040u);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }

    /// <summary>The float a bf16 bit pattern stands for (exact).</summary>
    public static float FromBf16(ushort bits) => Interop.IntAsFloat((uint)bits << 16);
}
