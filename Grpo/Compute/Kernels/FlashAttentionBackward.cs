// Attention v4's backward (FlashAttention-2, Dao 2023, Algorithm 2), recomputing P from the forward's
// log-sum-exp L instead of reading a stored P. With S = q . k / sqrt(D) over the allowed keys:
//   Di = dO_i . O_i                                   (FlashAttentionDeltaWarpKernel, a warp per row; first a thread per row)
//   P_ij = exp(S_ij - L_i),  dP_ij = dO_i . V_j,  dS_ij = P_ij (dP_ij - Di)
//   dQ_i += sum_j dS_ij K_j / sqrt(D)                 (FlashAttentionQueryBackwardKernel)
//   dV_j += sum_i P_ij dO_i,  dK_j += sum_i dS_ij Q_i / sqrt(D)   (FlashAttentionKeyValueBackwardKernel)
// A key not allowed gets P = 0 and so dS = 0; a row with no allowed key has L = +inf, so P = 0 there too.
// dQ: a group per (b, h, tile of Rows queries), walking the key tiles up to the tile's last causal key;
//   thread (ty, tx) forms S and dP for rows ty + 8 i and keys tx + 16 j (Q, dO tiles read along rows,
//   K, V tiles 68 floats a row), writes dS to shared memory, then adds dS K into rows ty + 8 i,
//   d = 4 tx .. 4 tx + 3 (K's rows read as Float4). Shared memory 37 KB.
// dK, dV: a group per (b, kv head g, tile of Keys keys), walking every query head of g (the grouped-query
//   heads are summed inside the group: one writer per dk, dv element, no atomics, the same result every
//   run) and, for each, the query tiles from the first that can see the key tile. Thread (ty, tx) forms
//   S^T and dP^T for keys ty + 8 i and queries tx + 16 j, writes P^T and dS^T to shared memory, then adds
//   P^T dO and dS^T Q into keys ty + 8 i, d = 4 tx .. 4 tx + 3. Shared memory 42 KB.
// Both add into the gradients (dq, dk, dv +=), as the op's backward does. Q tiles are pre-scaled by
// 1/sqrt(D), which makes S and the dK sum come out scaled with no further multiply.
// Tests: Grpo.Tests/Compute/FlashAttentionKernelTests.cs, PtxCompileTests.cs.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using Float4 = Grpo.Compute.Kernels.MatMulKernels.Float4;

namespace Grpo.Compute.Kernels;

public static partial class FlashAttentionKernels
{
    /// <summary>Di = dO . O for row (b, t, h) of q's layout, stored at (b, h, t) as L is.</summary>
    public static void FlashAttentionDeltaKernel(Index1D row, ArrayView<float> dOutput, ArrayView<float> output, ArrayView<float> delta, AttentionShape a)
    {
        int b = row / (a.T * a.Hq), t = row / a.Hq % a.T, h = row % a.Hq;
        long at = (long)(int)row * a.D;
        float sum = 0f;
        for (int d = 0; d < a.D; d++) sum += dOutput[at + d] * output[at + d];
        delta[((long)b * a.Hq + h) * a.T + t] = sum;
    }

    /// <summary>
    /// Di as FlashAttentionDeltaKernel, a warp per row (lanes along d, so a warp reads each row's 64 floats
    /// at once; the thread-per-row version read them serially, each thread its own row: 82 us a layer at
    /// the small shape on the H200, more than the forward). Explicitly grouped: DeltaWarps warps a group.
    /// </summary>
    public static void FlashAttentionDeltaWarpKernel(ArrayView<float> dOutput, ArrayView<float> output, ArrayView<float> delta, AttentionShape a)
    {
        int row = Grid.IdxX * DeltaWarps + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= a.B * a.T * a.Hq) return;   // the whole warp leaves together
        int b = row / (a.T * a.Hq), t = row / a.Hq % a.T, h = row % a.Hq;
        long at = (long)row * a.D;
        float sum = 0f;
        for (int d = lane; d < a.D; d += Warp.WarpSize) sum += dOutput[at + d] * output[at + d];
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2) sum += Warp.ShuffleXor(sum, offset);
        if (lane == 0) delta[((long)b * a.Hq + h) * a.T + t] = sum;
    }

    /// <summary>Warps a group of the delta kernel.</summary>
    public const int DeltaWarps = 8;

    /// <summary>v4 dq. Grid: query tiles x (B * Hq) groups of Threads.</summary>
    public static void FlashAttentionQueryBackwardKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> dOutput, ArrayView<float> logSumExp, ArrayView<float> delta, ArrayView<float> dq, AttentionShape a)
    {
        var queries = SharedMemory.Allocate<Float4>(Rows * RowFloat4s);     // [r][d4], scaled
        var dOutputs = SharedMemory.Allocate<Float4>(Rows * RowFloat4s);    // [r][d4]
        var keys = SharedMemory.Allocate<Float4>(Keys * PaddedFloat4s);    // [c][d4], 68 floats a row
        var values = SharedMemory.Allocate<Float4>(Keys * PaddedFloat4s);  // [c][d4], 68 floats a row
        var dScores = SharedMemory.Allocate<Float4>(Rows * Keys / 4);       // [r][c / 4]
        var dScoreFloats = dScores.Cast<float>();
        int thread = Group.IdxX, ty = thread / 16, tx = thread % 16;
        int queryTiles = (a.T + Rows - 1) / Rows;
        int pair = Grid.IdxX / queryTiles, b = pair / a.Hq, h = pair % a.Hq, kvHead = h / a.Group;
        int t0 = (queryTiles - 1 - Grid.IdxX % queryTiles) * Rows;
        int d4s = a.D / 4;

        LoadRows(queries, q, a, b, t0, a.T, a.Hq, h, RowFloat4s, a.Scale, thread);
        LoadRows(dOutputs, dOutput, a, b, t0, a.T, a.Hq, h, RowFloat4s, 1f, thread);
        var row0 = RowStats.Of(a, logSumExp, delta, b, h, t0 + ty);
        var row1 = RowStats.Of(a, logSumExp, delta, b, h, t0 + ty + 8);
        var row2 = RowStats.Of(a, logSumExp, delta, b, h, t0 + ty + 16);
        var row3 = RowStats.Of(a, logSumExp, delta, b, h, t0 + ty + 24);
        int keyEnd = XMath.Min(a.S, a.Offset + XMath.Min(t0 + Rows, a.T));
        Float4 grad0 = default, grad1 = default, grad2 = default, grad3 = default;   // sum_j dS_ij K_j, rows ty + 8 i
        for (int s0 = 0; s0 < keyEnd; s0 += Keys)
        {
            LoadRows(keys, k, a, b, s0, a.S, a.Hkv, kvHead, PaddedFloat4s, 1f, thread);
            LoadRows(values, v, a, b, s0, a.S, a.Hkv, kvHead, PaddedFloat4s, 1f, thread);
            Group.Barrier();
            var scores = Scores.Of(queries, keys, ty, tx, d4s);
            var dProbs = Scores.Of(dOutputs, values, ty, tx, d4s);
            int key0 = s0 + tx, key1 = s0 + tx + 16;
            bool open0 = KeyOpen(a, keyMask, b, key0), open1 = KeyOpen(a, keyMask, b, key1);
            int r = ty * Keys + tx;
            dScoreFloats[r] = row0.DScore(a, scores.S00, dProbs.S00, t0 + ty, key0, open0);
            dScoreFloats[r + 16] = row0.DScore(a, scores.S01, dProbs.S01, t0 + ty, key1, open1);
            dScoreFloats[r + 8 * Keys] = row1.DScore(a, scores.S10, dProbs.S10, t0 + ty + 8, key0, open0);
            dScoreFloats[r + 8 * Keys + 16] = row1.DScore(a, scores.S11, dProbs.S11, t0 + ty + 8, key1, open1);
            dScoreFloats[r + 16 * Keys] = row2.DScore(a, scores.S20, dProbs.S20, t0 + ty + 16, key0, open0);
            dScoreFloats[r + 16 * Keys + 16] = row2.DScore(a, scores.S21, dProbs.S21, t0 + ty + 16, key1, open1);
            dScoreFloats[r + 24 * Keys] = row3.DScore(a, scores.S30, dProbs.S30, t0 + ty + 24, key0, open0);
            dScoreFloats[r + 24 * Keys + 16] = row3.DScore(a, scores.S31, dProbs.S31, t0 + ty + 24, key1, open1);
            Group.Barrier();
            int keyQuads = (XMath.Min(Keys, a.S - s0) + 3) / 4;
            for (int c4 = 0; c4 < keyQuads; c4++)
            {
                var k0 = keys[(4 * c4) * PaddedFloat4s + tx];
                var k1 = keys[(4 * c4 + 1) * PaddedFloat4s + tx];
                var k2 = keys[(4 * c4 + 2) * PaddedFloat4s + tx];
                var k3 = keys[(4 * c4 + 3) * PaddedFloat4s + tx];
                grad0 = WeightedSum(grad0, dScores[ty * (Keys / 4) + c4], k0, k1, k2, k3);
                grad1 = WeightedSum(grad1, dScores[(ty + 8) * (Keys / 4) + c4], k0, k1, k2, k3);
                grad2 = WeightedSum(grad2, dScores[(ty + 16) * (Keys / 4) + c4], k0, k1, k2, k3);
                grad3 = WeightedSum(grad3, dScores[(ty + 24) * (Keys / 4) + c4], k0, k1, k2, k3);
            }
            Group.Barrier();
        }
        AddRow(dq, a, QueryRowAt(a, b, t0 + ty, h), t0 + ty < a.T, tx, grad0, a.Scale);
        AddRow(dq, a, QueryRowAt(a, b, t0 + ty + 8, h), t0 + ty + 8 < a.T, tx, grad1, a.Scale);
        AddRow(dq, a, QueryRowAt(a, b, t0 + ty + 16, h), t0 + ty + 16 < a.T, tx, grad2, a.Scale);
        AddRow(dq, a, QueryRowAt(a, b, t0 + ty + 24, h), t0 + ty + 24 < a.T, tx, grad3, a.Scale);
    }

    /// <summary>v4 dk and dv. Grid: key tiles x (B * Hkv) groups of Threads.</summary>
    public static void FlashAttentionKeyValueBackwardKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> dOutput, ArrayView<float> logSumExp, ArrayView<float> delta, ArrayView<float> dk, ArrayView<float> dv, AttentionShape a)
    {
        var keys = SharedMemory.Allocate<Float4>(Keys * RowFloat4s);        // [c][d4]
        var values = SharedMemory.Allocate<Float4>(Keys * RowFloat4s);      // [c][d4]
        var queries = SharedMemory.Allocate<Float4>(Rows * PaddedFloat4s);  // [r][d4], scaled, 68 floats a row
        var dOutputs = SharedMemory.Allocate<Float4>(Rows * PaddedFloat4s); // [r][d4], 68 floats a row
        var probsT = SharedMemory.Allocate<Float4>(Keys * Rows / 4);         // [c][r / 4]
        var dScoresT = SharedMemory.Allocate<Float4>(Keys * Rows / 4);       // [c][r / 4]
        var rowLogSumExp = SharedMemory.Allocate<float>(Rows);
        var rowDelta = SharedMemory.Allocate<float>(Rows);
        var probFloats = probsT.Cast<float>();
        var dScoreFloats = dScoresT.Cast<float>();
        int thread = Group.IdxX, ty = thread / 16, tx = thread % 16;
        int keyTiles = (a.S + Keys - 1) / Keys;
        int pair = Grid.IdxX / keyTiles, b = pair / a.Hkv, kvHead = pair % a.Hkv;
        int s0 = (Grid.IdxX % keyTiles) * Keys;   // the first key tiles are seen by the most queries: they start first
        int d4s = a.D / 4;

        LoadRows(keys, k, a, b, s0, a.S, a.Hkv, kvHead, RowFloat4s, 1f, thread);
        LoadRows(values, v, a, b, s0, a.S, a.Hkv, kvHead, RowFloat4s, 1f, thread);
        // this thread's keys ty + 8 i: open (exists, not padding) or not
        bool open0 = KeyOpen(a, keyMask, b, s0 + ty), open1 = KeyOpen(a, keyMask, b, s0 + ty + 8);
        bool open2 = KeyOpen(a, keyMask, b, s0 + ty + 16), open3 = KeyOpen(a, keyMask, b, s0 + ty + 24);
        Float4 dKey0 = default, dKey1 = default, dKey2 = default, dKey3 = default;
        Float4 dValue0 = default, dValue1 = default, dValue2 = default, dValue3 = default;
        int firstQuery = XMath.Max(0, s0 - a.Offset);   // query t sees key s when offset + t >= s
        for (int h = kvHead * a.Group; h < (kvHead + 1) * a.Group; h++)
            for (int t0 = firstQuery / Rows * Rows; t0 < a.T; t0 += Rows)
            {
                LoadRows(queries, q, a, b, t0, a.T, a.Hq, h, PaddedFloat4s, a.Scale, thread);
                LoadRows(dOutputs, dOutput, a, b, t0, a.T, a.Hq, h, PaddedFloat4s, 1f, thread);
                if (thread < Rows)
                {
                    var stats = RowStats.Of(a, logSumExp, delta, b, h, t0 + thread);
                    rowLogSumExp[thread] = stats.LogSumExp;
                    rowDelta[thread] = stats.Delta;
                }
                Group.Barrier();
                var scores = Scores.Of(keys, queries, ty, tx, d4s);   // S^T: keys ty + 8 i, queries tx + 16 j
                var dProbs = Scores.Of(values, dOutputs, ty, tx, d4s);
                int query0 = t0 + tx, query1 = t0 + tx + 16;
                var column0 = new RowStats { LogSumExp = rowLogSumExp[tx], Delta = rowDelta[tx] };
                var column1 = new RowStats { LogSumExp = rowLogSumExp[tx + 16], Delta = rowDelta[tx + 16] };
                int c = ty * Rows + tx;
                column0.Store(a, scores.S00, dProbs.S00, query0, s0 + ty, open0, probFloats, dScoreFloats, c);
                column1.Store(a, scores.S01, dProbs.S01, query1, s0 + ty, open0, probFloats, dScoreFloats, c + 16);
                column0.Store(a, scores.S10, dProbs.S10, query0, s0 + ty + 8, open1, probFloats, dScoreFloats, c + 8 * Rows);
                column1.Store(a, scores.S11, dProbs.S11, query1, s0 + ty + 8, open1, probFloats, dScoreFloats, c + 8 * Rows + 16);
                column0.Store(a, scores.S20, dProbs.S20, query0, s0 + ty + 16, open2, probFloats, dScoreFloats, c + 16 * Rows);
                column1.Store(a, scores.S21, dProbs.S21, query1, s0 + ty + 16, open2, probFloats, dScoreFloats, c + 16 * Rows + 16);
                column0.Store(a, scores.S30, dProbs.S30, query0, s0 + ty + 24, open3, probFloats, dScoreFloats, c + 24 * Rows);
                column1.Store(a, scores.S31, dProbs.S31, query1, s0 + ty + 24, open3, probFloats, dScoreFloats, c + 24 * Rows + 16);
                Group.Barrier();
                int rowQuads = (XMath.Min(Rows, a.T - t0) + 3) / 4;
                for (int r4 = 0; r4 < rowQuads; r4++)
                {
                    var o0 = dOutputs[(4 * r4) * PaddedFloat4s + tx];
                    var o1 = dOutputs[(4 * r4 + 1) * PaddedFloat4s + tx];
                    var o2 = dOutputs[(4 * r4 + 2) * PaddedFloat4s + tx];
                    var o3 = dOutputs[(4 * r4 + 3) * PaddedFloat4s + tx];
                    dValue0 = WeightedSum(dValue0, probsT[ty * (Rows / 4) + r4], o0, o1, o2, o3);
                    dValue1 = WeightedSum(dValue1, probsT[(ty + 8) * (Rows / 4) + r4], o0, o1, o2, o3);
                    dValue2 = WeightedSum(dValue2, probsT[(ty + 16) * (Rows / 4) + r4], o0, o1, o2, o3);
                    dValue3 = WeightedSum(dValue3, probsT[(ty + 24) * (Rows / 4) + r4], o0, o1, o2, o3);
                    var q0 = queries[(4 * r4) * PaddedFloat4s + tx];
                    var q1 = queries[(4 * r4 + 1) * PaddedFloat4s + tx];
                    var q2 = queries[(4 * r4 + 2) * PaddedFloat4s + tx];
                    var q3 = queries[(4 * r4 + 3) * PaddedFloat4s + tx];
                    dKey0 = WeightedSum(dKey0, dScoresT[ty * (Rows / 4) + r4], q0, q1, q2, q3);
                    dKey1 = WeightedSum(dKey1, dScoresT[(ty + 8) * (Rows / 4) + r4], q0, q1, q2, q3);
                    dKey2 = WeightedSum(dKey2, dScoresT[(ty + 16) * (Rows / 4) + r4], q0, q1, q2, q3);
                    dKey3 = WeightedSum(dKey3, dScoresT[(ty + 24) * (Rows / 4) + r4], q0, q1, q2, q3);
                }
                Group.Barrier();
            }
        AddKeyRow(dk, dv, a, b, s0 + ty, kvHead, tx, dKey0, dValue0);
        AddKeyRow(dk, dv, a, b, s0 + ty + 8, kvHead, tx, dKey1, dValue1);
        AddKeyRow(dk, dv, a, b, s0 + ty + 16, kvHead, tx, dKey2, dValue2);
        AddKeyRow(dk, dv, a, b, s0 + ty + 24, kvHead, tx, dKey3, dValue3);
    }

    /// <summary>A query row's L and Di (+inf and 0 past T, so its P and dS are 0).</summary>
    private struct RowStats
    {
        public float LogSumExp, Delta;

        public static RowStats Of(AttentionShape a, ArrayView<float> logSumExp, ArrayView<float> delta, int b, int h, int t)
        {
            if (t >= a.T) return new RowStats { LogSumExp = float.PositiveInfinity };
            long at = ((long)b * a.Hq + h) * a.T + t;
            return new RowStats { LogSumExp = logSumExp[at], Delta = delta[at] };
        }

        /// <summary>dS = P (dP - Di), P = exp(S - L), for query t and key s; 0 where not allowed.</summary>
        public readonly float DScore(AttentionShape a, float score, float dProb, int t, int s, bool open) =>
            Allowed(a, t, s, open) ? XMath.Exp(score - LogSumExp) * (dProb - Delta) : 0f;

        /// <summary>P and dS of (query t, key s) into the transposed shared tiles at `at`.</summary>
        public readonly void Store(AttentionShape a, float score, float dProb, int t, int s, bool open,
            ArrayView<float> probsT, ArrayView<float> dScoresT, int at)
        {
            float p = Allowed(a, t, s, open) ? XMath.Exp(score - LogSumExp) : 0f;
            probsT[at] = p;
            dScoresT[at] = p * (dProb - Delta);
        }
    }

    /// <summary>x[at + 4 tx ..] += scale * value, for a real row and d &lt; D.</summary>
    private static void AddRow(ArrayView<float> x, AttentionShape a, long at, bool real, int tx, Float4 value, float scale)
    {
        if (!real || 4 * tx >= a.D) return;
        var x4 = x.Cast<Float4>();
        long i = at / 4 + tx;
        x4[i] = Add(x4[i], Scale(value, scale));
    }

    private static void AddKeyRow(ArrayView<float> dk, ArrayView<float> dv, AttentionShape a, int b, int s, int kvHead, int tx, Float4 dKey, Float4 dValue)
    {
        long at = (((long)b * a.S + s) * a.Hkv + kvHead) * a.D;
        AddRow(dk, a, at, s < a.S, tx, dKey, 1f);
        AddRow(dv, a, at, s < a.S, tx, dValue, 1f);
    }
}
