// The spread decode step (a design next to op by op and the fused kernels of DecodeKernels.cs): a one-token cached step (T == 1) as a few launches a layer, each over all rows
// at once and spread over many groups, the weight read once a launch (Model/Transformer.SpreadDecode.cs
// drives it). The same computation as Transformer.Run's lines for one layer:
//   var n = Op.RmsNorm(x, layer.InputNorm, config.NormEps);                   (B, T, C)
//   var q = Linear(n, layer.Q, layer.QBias) ...  k = Linear(n, layer.K, ...)  v = Linear(n, layer.V, ...)
//   q = Op.Rope(q, positions, config.RopeTheta);  k = Op.Rope(k, positions, config.RopeTheta);
//   var (keys, values) = cache.Append(layer, k, v);                           (B, capacity, Hkv, D)
//                                                                  -> launch 1, Mode Qkv (x from the embedding table in layer 0)
//   var attended = Op.Attention(q, keys, values, cache.KeyMask, queryOffset: start)
//                                                                  -> launch 2, AttentionKernels.Forward (v3, a warp per (row, head))
//   x = Op.Add(x, Linear(attended, layer.O));                      -> launch 3, Mode Plain, accumulate
//   n = Op.RmsNorm(x, layer.PostNorm, config.NormEps);
//   var hidden = Op.SwiGlu(Linear(n, layer.Gate), Linear(n, layer.Up));      (B, T, F)
//                                                                  -> launch 4, Mode GateUp
//   x = Op.Add(x, Linear(hidden, layer.Down));                     -> launch 5, Mode Plain, accumulate
// and the head `x = Op.RmsNorm(x, finalNorm, eps); return Linear(x, lmHead);` -> Mode Plain with the norm.
// Why: the fused step (DecodeKernels.cs, a group a row) gives the small shape only 64 groups on 132 SMs and
// every row's group re-reads the whole layer's weights; here a launch reads each weight once and has
// ceil(N / 32) x ceil(B / 64) groups (qkv at the small shape: 24, gate/up 48, o 8, down 8, lm_head 4 a row block).
// Kernel: MatMulSmallShapes.cs's MatMulRowsKernel (a group per 32 columns x 64 rows, K through shared memory,
// Float4 loads issued a k-step ahead, thread (tx, ty) = (thread % 8, thread / 8) owning rows 4 ty .. 4 ty + 3
// and the group's columns tx, tx + 8, tx + 16, tx + 24), but 32 of K a step, not 16 (six Float4 loads a
// thread in flight, half the k-steps: each is about an L2 round trip, and these launches are latency-bound), with:
//   - the norm on load: the group first sums x^2 of its 64 rows (two threads a row), then scales every A
//     quad by r_row = 1 / sqrt(mean x^2 + eps) and the norm weight as it goes into shared memory;
//   - layer 0's x gathered from the embedding table at the row's token (the group of column block 0 also
//     writes those rows to x, for the residual adds that follow);
//   - paired columns (Qkv, GateUp): the group's column c < 16 and c + 16 are a pair, so a thread holds both
//     halves of its two pairs (tx, tx + 16) and (tx + 8, tx + 24) in registers. Qkv: pair P (16 a group) is
//     (head P / (D/2), i = P % (D/2)) over the Hq + 2 Hkv heads of [q; k; v], its columns i and i + D/2 of the
//     head, so RoPE (the Rope op's device table) is an epilogue; q goes to a (B, Hq D) buffer, k and v into
//     the cache at position Length. GateUp: pair f is gate row f and up row f, hidden = silu(g) * u.
// Needs K (C or F) divisible by 4 and D even; rows past 64 take more row blocks (Grid.IdxY). No split-K.
// RowsPerBlock (64 by default) can be smaller, for more groups (each re-reading the weight from L2): a group's
// tile rows past it load the block's last row and store nothing (the small shape's o_proj and down have only
// 8 column blocks; bench's generate_spread_rows16 / _32 time that).
// Versions: v1 (this; the decode step op by op and fused are the other designs). Measured on the H200
// (`grpo bench --figures generate`, 64 x 96 new tokens, one run): small shape 89.1k new tokens/s at 21
// launches a step (rows a group 32: 89.6k, 16: 86.6k) against the fused v2's 108.8k at 5 and op by op
// 48.2k at 75; mid shape 11.2k at 61 launches against op by op 14.3k at 291. Slower than both where each
// is taken, so it stays an option (Transformer.SpreadDecode, off): o_proj and down have 8 column groups
// at the small shape, and every launch walks all of K in one group with 64 rows of A through shared memory.
// Tests: Grpo.Tests/Compute/SpreadDecodeTests.cs (against the op-by-op path and the CPU), PtxCompileTests.cs;
// `grpo check --device cuda` (the decode step line "spread kernels").
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using Float4 = Grpo.Compute.Kernels.MatMulKernels.Float4;

namespace Grpo.Compute.Kernels;

/// <summary>One launch of the spread decode kernel: Out (M, N) (+)= f(A) (M, K) @ W^T and its epilogue (see the header).</summary>
public struct SpreadArgs
{
    public ArrayView<float> A, Embed, Norm;             // A (M, K), or rows of Embed (V, K) at Tokens when FromTokens; Norm (K) when HasNorm
    public ArrayView<int> Tokens, Positions;            // (M), (M)
    public ArrayView<float> W0, W1, W2, B0, B1, B2;     // Plain: W0 (N, K); Qkv: Q, K, V and their biases; GateUp: Gate, Up
    public ArrayView<float> Out, CacheK, CacheV, Cos, Sin;
    public int M, K, N, Mode, HasNorm, FromTokens, HasBias, Accumulate, RowsPerBlock;   // RowsPerBlock 1 .. 64 (Launch sets 0 to 64)
    public int Hq, Hkv, D, Capacity, Length;
    public float Eps;
}

public static class DecodeSpreadKernels
{
    public const int ModePlain = 0, ModeQkv = 1, ModeGateUp = 2;
    public const int TileColumns = 32, TileRows = 64, KStep = 32, Threads = 128, PairsPerGroup = 16;
    private const int QuadStride = KStep / 4 + 1;   // a shared row: 8 quads of k and one of padding

    /// <summary>v1: one launch (see the header). Grid (column blocks, row blocks), groups of Threads.</summary>
    public static void SpreadKernel(SpreadArgs s)
    {
        var aTile = SharedMemory.Allocate<Float4>(TileRows * QuadStride);
        var bTile = SharedMemory.Allocate<Float4>(TileColumns * QuadStride);
        var partials = SharedMemory.Allocate<float>(Threads);
        var inverse = SharedMemory.Allocate<float>(TileRows);
        int thread = Group.IdxX, tx = thread % 8, ty = thread / 8;
        int rowBase = Grid.IdxY * s.RowsPerBlock, k = s.K;
        var a4 = s.FromTokens != 0 ? s.Embed.Cast<Float4>() : s.A.Cast<Float4>();

        // This thread's loads of a k-step: quad `quad` of rows r, r + 16, r + 32, r + 48 of A and of columns
        // c, c + 16 of the weight (r = c = thread / 8). Rows past M read row M - 1 and are not written.
        int r = thread / 8, quad = thread % 8;
        long aAt0 = ARowAt(s, LoadRow(s, rowBase, r)), aAt1 = ARowAt(s, LoadRow(s, rowBase, r + 16));
        long aAt2 = ARowAt(s, LoadRow(s, rowBase, r + 32)), aAt3 = ARowAt(s, LoadRow(s, rowBase, r + 48));

        var scales = new Float4 { X = 1f, Y = 1f, Z = 1f, W = 1f };   // r_row of the four rows
        if (s.HasNorm != 0)
        {
            // Two threads a row: quads half, half + 2, ... of row thread / 2.
            int normRow = thread / 2, half = thread % 2;
            long at = ARowAt(s, LoadRow(s, rowBase, normRow)) / 4;
            float sum = 0f;
            for (int q = half; q < k / 4; q += 2)
            {
                var v = a4[at + q];
                sum += v.X * v.X + v.Y * v.Y + v.Z * v.Z + v.W * v.W;
            }
            partials[thread] = sum;
            Group.Barrier();
            if (thread < TileRows) inverse[thread] = 1f / XMath.Sqrt((partials[2 * thread] + partials[2 * thread + 1]) / k + s.Eps);
            Group.Barrier();
            scales = new Float4 { X = inverse[r], Y = inverse[r + 16], Z = inverse[r + 32], W = inverse[r + 48] };
        }

        int which0 = WeightWhich(s, Grid.IdxX, r), which1 = WeightWhich(s, Grid.IdxX, r + 16);
        var b40 = (which0 == 0 ? s.W0 : which0 == 1 ? s.W1 : s.W2).Cast<Float4>();
        var b41 = (which1 == 0 ? s.W0 : which1 == 1 ? s.W1 : s.W2).Cast<Float4>();
        long bAt0 = (long)WeightRow(s, Grid.IdxX, r) * k, bAt1 = (long)WeightRow(s, Grid.IdxX, r + 16) * k;
        var norm4 = s.Norm.Cast<Float4>();
        bool writeX = s.FromTokens != 0 && Grid.IdxX == 0;   // layer 0: column block 0 copies the gathered rows to x
        var x4 = s.A.Cast<Float4>();

        var acc = default(MatMulKernels.Block4x4);   // the rows kernel's register block (MatMulSmallShapes.cs)
        var next = LoadStep(a4, b40, b41, aAt0, aAt1, aAt2, aAt3, bAt0, bAt1, 4 * quad, k);
        for (int k0 = 0; k0 < k; k0 += KStep)
        {
            int kq = k0 + 4 * quad;
            if (writeX && kq < k)
            {
                WriteX(s, x4, next.A0, rowBase, r, kq); WriteX(s, x4, next.A1, rowBase, r + 16, kq);
                WriteX(s, x4, next.A2, rowBase, r + 32, kq); WriteX(s, x4, next.A3, rowBase, r + 48, kq);
            }
            if (s.HasNorm != 0 && kq < k)
            {
                var w = norm4[kq / 4];
                next.A0 = Scale(next.A0, scales.X, w); next.A1 = Scale(next.A1, scales.Y, w);
                next.A2 = Scale(next.A2, scales.Z, w); next.A3 = Scale(next.A3, scales.W, w);
            }
            aTile[r * QuadStride + quad] = next.A0;
            aTile[(r + 16) * QuadStride + quad] = next.A1;
            aTile[(r + 32) * QuadStride + quad] = next.A2;
            aTile[(r + 48) * QuadStride + quad] = next.A3;
            bTile[r * QuadStride + quad] = next.B0;
            bTile[(r + 16) * QuadStride + quad] = next.B1;
            Group.Barrier();
            if (k0 + KStep < k) next = LoadStep(a4, b40, b41, aAt0, aAt1, aAt2, aAt3, bAt0, bAt1, k0 + KStep + 4 * quad, k);
            for (int q = 0; q < KStep / 4; q++)
            {
                var a0 = aTile[(4 * ty) * QuadStride + q];
                var a1 = aTile[(4 * ty + 1) * QuadStride + q];
                var a2 = aTile[(4 * ty + 2) * QuadStride + q];
                var a3 = aTile[(4 * ty + 3) * QuadStride + q];
                acc = acc.Add(a0, a1, a2, a3,
                    bTile[tx * QuadStride + q], bTile[(tx + 8) * QuadStride + q],
                    bTile[(tx + 16) * QuadStride + q], bTile[(tx + 24) * QuadStride + q]);
            }
            Group.Barrier();
        }
        if (4 * ty < s.RowsPerBlock) Epilogue(s, rowBase + 4 * ty, tx, acc.R0);
        if (4 * ty + 1 < s.RowsPerBlock) Epilogue(s, rowBase + 4 * ty + 1, tx, acc.R1);
        if (4 * ty + 2 < s.RowsPerBlock) Epilogue(s, rowBase + 4 * ty + 2, tx, acc.R2);
        if (4 * ty + 3 < s.RowsPerBlock) Epilogue(s, rowBase + 4 * ty + 3, tx, acc.R3);
    }

    private static void WriteX(SpreadArgs s, ArrayView<Float4> x4, Float4 value, int rowBase, int local, int kq)
    {
        if (local < s.RowsPerBlock && rowBase + local < s.M) x4[((long)(rowBase + local) * s.K + kq) / 4] = value;
    }

    /// <summary>The row a tile row loads: rows past the block or past M read the last one there (their outputs are not written).</summary>
    private static int LoadRow(SpreadArgs s, int rowBase, int local) => XMath.Min(rowBase + XMath.Min(local, s.RowsPerBlock - 1), s.M - 1);

    /// <summary>Where row r of A starts: x's row, or the embedding row of the row's token.</summary>
    private static long ARowAt(SpreadArgs s, int row) => (long)(s.FromTokens != 0 ? s.Tokens[row] : row) * s.K;

    /// <summary>Pairs a launch has (Qkv, GateUp) or columns (Plain).</summary>
    private static int Pairs(SpreadArgs s) => s.Mode == ModeQkv ? (s.Hq + 2 * s.Hkv) * s.D / 2 : s.N;

    /// <summary>Which weight (0: W0, 1: W1, 2: W2) column c (0 .. 31) of column block g multiplies by.</summary>
    private static int WeightWhich(SpreadArgs s, int g, int c)
    {
        if (s.Mode == ModePlain) return 0;
        if (s.Mode == ModeGateUp) return c / PairsPerGroup;
        int column = QkvColumn(s, XMath.Min(g * PairsPerGroup + c % PairsPerGroup, Pairs(s) - 1), c / PairsPerGroup), C = s.Hq * s.D;
        return column < C ? 0 : column < C + s.Hkv * s.D ? 1 : 2;
    }

    /// <summary>The row of that weight (clamped past the end).</summary>
    private static int WeightRow(SpreadArgs s, int g, int c)
    {
        if (s.Mode == ModePlain) return XMath.Min(g * TileColumns + c, s.N - 1);
        int pair = XMath.Min(g * PairsPerGroup + c % PairsPerGroup, Pairs(s) - 1);
        if (s.Mode == ModeGateUp) return pair;
        int column = QkvColumn(s, pair, c / PairsPerGroup), C = s.Hq * s.D, kvDim = s.Hkv * s.D;
        return column < C ? column : column < C + kvDim ? column - C : column - C - kvDim;
    }

    /// <summary>Column of [q; k; v] (heads of D) of side (0: i, 1: i + D/2) of pair (head, i).</summary>
    private static int QkvColumn(SpreadArgs s, int pair, int side)
    {
        int half = s.D / 2;
        return pair / half * s.D + pair % half + side * half;
    }

    /// <summary>Stores one row's four outputs of this thread: columns tx, tx + 8 (X, Y) and tx + 16, tx + 24 (Z, W).</summary>
    private static void Epilogue(SpreadArgs s, int row, int tx, Float4 sums)
    {
        if (row >= s.M) return;
        if (s.Mode == ModePlain)
        {
            int column = Grid.IdxX * TileColumns + tx;
            Store(s, row, column, sums.X); Store(s, row, column + 8, sums.Y);
            Store(s, row, column + 16, sums.Z); Store(s, row, column + 24, sums.W);
            return;
        }
        int pair = Grid.IdxX * PairsPerGroup + tx;
        Pair(s, row, pair, sums.X, sums.Z);
        Pair(s, row, pair + 8, sums.Y, sums.W);
    }

    private static void Store(SpreadArgs s, int row, int column, float value)
    {
        if (column >= s.N) return;
        long at = (long)row * s.N + column;
        if (s.Accumulate != 0) s.Out[at] += value;
        else s.Out[at] = value;
    }

    /// <summary>A pair's epilogue: SwiGLU (GateUp), or bias, RoPE on q and k, and the stores (Qkv).</summary>
    private static void Pair(SpreadArgs s, int row, int pair, float first, float second)
    {
        if (pair >= Pairs(s)) return;
        if (s.Mode == ModeGateUp)
        {
            s.Out[(long)row * s.N + pair] = first * (1f / (1f + XMath.Exp(-first))) * second;   // silu(gate) * up, as SwiGluKernel
            return;
        }
        int half = s.D / 2, head = pair / half, i = pair % half, C = s.Hq * s.D, kvDim = s.Hkv * s.D;
        int column = QkvColumn(s, pair, 0);
        if (s.HasBias != 0)
        {
            first += Bias(s, column, C, kvDim);
            second += Bias(s, column + half, C, kvDim);
        }
        if (head < s.Hq + s.Hkv)
        {
            long tableAt = (long)s.Positions[row] * half + i;
            float c = s.Cos[tableAt], sn = s.Sin[tableAt];
            float rotatedFirst = first * c - second * sn;
            second = second * c + first * sn;
            first = rotatedFirst;
        }
        if (head < s.Hq)
        {
            long at = (long)row * C + column;
            s.Out[at] = first;
            s.Out[at + half] = second;
            return;
        }
        long cacheAt = ((long)row * s.Capacity + s.Length) * kvDim;
        if (head < s.Hq + s.Hkv)
        {
            s.CacheK[cacheAt + column - C] = first;
            s.CacheK[cacheAt + column - C + half] = second;
        }
        else
        {
            s.CacheV[cacheAt + column - C - kvDim] = first;
            s.CacheV[cacheAt + column - C - kvDim + half] = second;
        }
    }

    private static float Bias(SpreadArgs s, int column, int C, int kvDim) =>
        column < C ? s.B0[column] : column < C + kvDim ? s.B1[column - C] : s.B2[column - C - kvDim];

    private static Float4 Scale(Float4 a, float r, Float4 w) => new() { X = a.X * r * w.X, Y = a.Y * r * w.Y, Z = a.Z * r * w.Z, W = a.W * r * w.W };

    private struct Step
    {
        public Float4 A0, A1, A2, A3, B0, B1;
    }

    /// <summary>One thread's quads of a k-step at k (zeros past K; K is a multiple of 4, so a quad is all in or all out).</summary>
    private static Step LoadStep(ArrayView<Float4> a4, ArrayView<Float4> b40, ArrayView<Float4> b41, long aAt0, long aAt1, long aAt2, long aAt3,
        long bAt0, long bAt1, int k, int K)
    {
        if (k >= K) return default;
        return new Step
        {
            A0 = a4[(aAt0 + k) / 4], A1 = a4[(aAt1 + k) / 4], A2 = a4[(aAt2 + k) / 4], A3 = a4[(aAt3 + k) / 4],
            B0 = b40[(bAt0 + k) / 4], B1 = b41[(bAt1 + k) / 4],
        };
    }


    public static Action<KernelConfig, SpreadArgs> Load(Accelerator accelerator) =>
        accelerator.LoadStreamKernel<SpreadArgs>(SpreadKernel);

    /// <summary>One launch over rows 0 .. M - 1 (unused views may be any valid view; Float4 views start 16-byte aligned).</summary>
    public static void Launch(Device device, SpreadArgs s)
    {
        if (s.M == 0) return;
        if (s.K % 4 != 0) throw new ArgumentException($"spread decode: K = {s.K} is not a multiple of 4");
        if (s.RowsPerBlock <= 0) s.RowsPerBlock = TileRows;
        if (s.RowsPerBlock > TileRows) throw new ArgumentException($"spread decode: {s.RowsPerBlock} rows a block, at most {TileRows}");
        int blocks = s.Mode == ModePlain ? (s.N + TileColumns - 1) / TileColumns : (Pairs(s) + PairsPerGroup - 1) / PairsPerGroup;
        var grid = new Index2D(blocks, (s.M + s.RowsPerBlock - 1) / s.RowsPerBlock);
        device.Kernels.Get("decode_spread", Load)(new KernelConfig(grid, new Index2D(Threads, 1)), s);
    }
}
