// Attention v3, the forward with the keys spread over a warp's lanes. v2 walks the keys one after
// another, a warp-wide dot sum and an exp on every step; here the lanes take different keys, so a row
// costs a handful of dependent steps however many keys it has. Written first for decoding (T == 1, a
// step with a KV cache), then used for every T: a query row is (b, t, h), with its own causal limit.
// One warp per row, groups of WarpsPerGroup warps, as v2; the equations are AttentionKernels.cs's:
//   1. scores: lane j takes keys s = j, j + 32, ... < allowed and does the whole dot q . k_s over d
//      (q read from global: every lane reads the same q[d], one broadcast); a masked key scores -inf.
//      The raw score goes into P[s], which only lane j reads back.
//   2. max: one xor-shuffle max over the lanes' maxima; sum of exp(score - max): one xor-shuffle sum.
//      A lane with no key, or only masked ones, holds -inf / 0 and changes neither. A row with no
//      allowed key (max -inf) gets o = 0 and P = 0, as v1, v2 and Ops/Attention.cs.
//   3. per block of 32 keys: lane j turns its raw score into P[s] = exp(score - max) / sum (0 for
//      allowed <= s < S), and the warp adds o[d] += P_s v_s[d] with lanes over d (d = lane, lane + 32,
//      ..., coalesced rows of v), P_s taken by Warp.Shuffle from lane j; eight keys a step, their loads
//      free of branches (LaneRow.AddEight), so eight rows of v are in flight at once.
// Tests: Grpo.Tests/Compute/AttentionKernelTests.cs (against the reference, v2 and v1), PtxCompileTests.cs.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static partial class AttentionKernels
{
    /// <summary>v3 forward: one warp per query row (b, t, h), lanes split the keys for the scores and d for o.</summary>
    public static void AttentionDecodeKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> probs, AttentionShape a)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= a.B * a.T * a.Hq) return;   // an idle warp of the last group: all its lanes leave together
        int b = row / (a.T * a.Hq), t = row / a.Hq % a.T, h = row % a.Hq, kvHead = h / a.Group;
        long qAt = (long)row * a.D, pAt = (((long)b * a.Hq + h) * a.T + t) * a.S;   // q and o (B, T, Hq, D); P (B, Hq, T, S)
        int allowed = a.Allowed(t);

        float laneMax = float.NegativeInfinity;
        for (int s = lane; s < allowed; s += Lanes)
        {
            float score = float.NegativeInfinity;
            if (a.HasMask == 0 || keyMask[b * a.S + s] != 0)
                score = Dot(q, qAt, k, KeyValueAt(a, b, s, kvHead), a.D) * a.Scale;
            probs[pAt + s] = score;
            laneMax = XMath.Max(laneMax, score);
        }
        float max = WarpMax(laneMax);
        bool none = max == float.NegativeInfinity;   // no allowed key: zeros, as v1, v2 and the CPU

        float laneSum = 0f;
        if (!none)
            for (int s = lane; s < allowed; s += Lanes) laneSum += XMath.Exp(probs[pAt + s] - max);
        float inverse = none ? 0f : 1f / WarpSum(laneSum);

        var acc = default(LaneRow);   // sum_s P_s v_s, lane's share of d
        int keys = none ? 0 : allowed;   // the same in every lane, so every lane takes every shuffle below
        for (int block = 0; block < a.S; block += Lanes)
        {
            int s = block + lane;
            float p = s < keys ? XMath.Exp(probs[pAt + s] - max) * inverse : 0f;
            if (s < a.S) probs[pAt + s] = p;
            int last = XMath.Min(block + Lanes, keys) - 1;   // the block's last key to add; its row stands in for keys past it (weight 0)
            for (int j = 0; block + j <= last; j += 8)
            {
                var first = new WeightedRows
                {
                    W0 = Warp.Shuffle(p, j), W1 = Warp.Shuffle(p, j + 1), W2 = Warp.Shuffle(p, j + 2), W3 = Warp.Shuffle(p, j + 3),
                    At0 = KeyValueAt(a, b, block + j, kvHead), At1 = KeyValueAt(a, b, XMath.Min(block + j + 1, last), kvHead),
                    At2 = KeyValueAt(a, b, XMath.Min(block + j + 2, last), kvHead), At3 = KeyValueAt(a, b, XMath.Min(block + j + 3, last), kvHead),
                };
                var second = new WeightedRows
                {
                    W0 = Warp.Shuffle(p, j + 4), W1 = Warp.Shuffle(p, j + 5), W2 = Warp.Shuffle(p, j + 6), W3 = Warp.Shuffle(p, j + 7),
                    At0 = KeyValueAt(a, b, XMath.Min(block + j + 4, last), kvHead), At1 = KeyValueAt(a, b, XMath.Min(block + j + 5, last), kvHead),
                    At2 = KeyValueAt(a, b, XMath.Min(block + j + 6, last), kvHead), At3 = KeyValueAt(a, b, XMath.Min(block + j + 7, last), kvHead),
                };
                acc = acc.AddEight(v, lane, a.D, first, second);
            }
        }
        acc.Store(output, qAt, lane, a.D, 1f, add: false);
    }

    /// <summary>
    /// v3 query backward, the keys across the lanes as in the forward: one warp per query row (b, t, h).
    /// dO . o by a warp sum once; lane j then takes keys s = j, j + 32, ... < allowed and forms
    /// dscore_s = (dO . v_s - dO . o) P_s Scale with a whole dot of its own (0 where P_s is 0: a masked
    /// key adds nothing), written to dScores (zeros past the allowed keys, as v1 and v2); and the warp
    /// adds dq[d] += sum_s dscore_s k_s[d] with lanes over d, dscore_s shuffled from lane j, eight keys a step.
    /// </summary>
    public static void AttentionQueryBackwardLanesKernel(ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> probs, ArrayView<float> dOutput, ArrayView<float> dScores, ArrayView<float> dq, AttentionShape a)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= a.B * a.T * a.Hq) return;   // an idle warp of the last group: all its lanes leave together
        int b = row / (a.T * a.Hq), t = row / a.Hq % a.T, h = row % a.Hq, kvHead = h / a.Group;
        long qAt = (long)row * a.D, pAt = (((long)b * a.Hq + h) * a.T + t) * a.S;
        int allowed = a.Allowed(t), keys = XMath.Max(allowed, 0);
        float dOutDotOut = WarpSum(LaneRow.Load(dOutput, qAt, lane, a.D).Dot(output, qAt, lane, a.D));

        var grad = default(LaneRow);   // sum_s dscore_s k_s, lane's share of d
        for (int block = 0; block < a.S; block += Lanes)
        {
            int s = block + lane;
            float dScore = 0f;
            if (s < keys)
            {
                float p = probs[pAt + s];
                if (p != 0f) dScore = (Dot(dOutput, qAt, v, KeyValueAt(a, b, s, kvHead), a.D) - dOutDotOut) * p * a.Scale;
            }
            if (s < a.S) dScores[pAt + s] = dScore;
            int last = XMath.Min(block + Lanes, keys) - 1;   // the same in every lane: every lane takes every shuffle
            for (int j = 0; block + j <= last; j += 8)
            {
                var first = new WeightedRows
                {
                    W0 = Warp.Shuffle(dScore, j), W1 = Warp.Shuffle(dScore, j + 1), W2 = Warp.Shuffle(dScore, j + 2), W3 = Warp.Shuffle(dScore, j + 3),
                    At0 = KeyValueAt(a, b, block + j, kvHead), At1 = KeyValueAt(a, b, XMath.Min(block + j + 1, last), kvHead),
                    At2 = KeyValueAt(a, b, XMath.Min(block + j + 2, last), kvHead), At3 = KeyValueAt(a, b, XMath.Min(block + j + 3, last), kvHead),
                };
                var second = new WeightedRows
                {
                    W0 = Warp.Shuffle(dScore, j + 4), W1 = Warp.Shuffle(dScore, j + 5), W2 = Warp.Shuffle(dScore, j + 6), W3 = Warp.Shuffle(dScore, j + 7),
                    At0 = KeyValueAt(a, b, XMath.Min(block + j + 4, last), kvHead), At1 = KeyValueAt(a, b, XMath.Min(block + j + 5, last), kvHead),
                    At2 = KeyValueAt(a, b, XMath.Min(block + j + 6, last), kvHead), At3 = KeyValueAt(a, b, XMath.Min(block + j + 7, last), kvHead),
                };
                grad = grad.AddEight(k, lane, a.D, first, second);
            }
        }
        grad.Store(dq, qAt, lane, a.D, 1f, add: true);
    }

    /// <summary>Where row s of head kvHead of batch b starts in k or v (B, S, Hkv, D).</summary>
    private static long KeyValueAt(AttentionShape a, int b, int s, int kvHead) => (((long)b * a.S + s) * a.Hkv + kvHead) * a.D;

    /// <summary>q[qAt .. qAt + D) . k[kAt .. kAt + D), four independent partial sums so that the loads overlap.</summary>
    private static float Dot(ArrayView<float> q, long qAt, ArrayView<float> k, long kAt, int D)
    {
        float dot0 = 0f, dot1 = 0f, dot2 = 0f, dot3 = 0f;
        int d = 0;
        for (; d + 3 < D; d += 4)
        {
            dot0 += q[qAt + d] * k[kAt + d];
            dot1 += q[qAt + d + 1] * k[kAt + d + 1];
            dot2 += q[qAt + d + 2] * k[kAt + d + 2];
            dot3 += q[qAt + d + 3] * k[kAt + d + 3];
        }
        for (; d < D; d++) dot0 += q[qAt + d] * k[kAt + d];
        return dot0 + dot1 + dot2 + dot3;
    }

    /// <summary>The largest value over the warp's lanes, in every lane (-inf when all are -inf).</summary>
    private static float WarpMax(float value)
    {
        for (int laneMask = Lanes / 2; laneMask > 0; laneMask /= 2) value = XMath.Max(value, Warp.ShuffleXor(value, laneMask));
        return value;
    }

    /// <summary>Four keys' weights and where their rows start; Sum is w . x[at + d] over the four.</summary>
    private struct WeightedRows
    {
        public float W0, W1, W2, W3;
        public long At0, At1, At2, At3;

        public readonly float Sum(ArrayView<float> x, int d) => W0 * x[At0 + d] + W1 * x[At1 + d] + W2 * x[At2 + d] + W3 * x[At3 + d];
    }

    private partial struct LaneRow
    {
        /// <summary>
        /// row + the eight weighted rows of x over the lane's d. A d past D reads x's element D - 1 instead
        /// (in bounds, and its sum lands in a register Store never writes), so the loads carry no branch
        /// and a head of up to 64 issues all 16 of them together; only D > 64 branches, once, for the rest.
        /// </summary>
        public readonly LaneRow AddEight(ArrayView<float> x, int lane, int D, WeightedRows first, WeightedRows second)
        {
            var row = this;
            int last = D - 1;
            row.X0 += first.Sum(x, XMath.Min(lane, last)) + second.Sum(x, XMath.Min(lane, last));
            row.X1 += first.Sum(x, XMath.Min(lane + 32, last)) + second.Sum(x, XMath.Min(lane + 32, last));
            if (D > 64)
            {
                row.X2 += first.Sum(x, XMath.Min(lane + 64, last)) + second.Sum(x, XMath.Min(lane + 64, last));
                row.X3 += first.Sum(x, XMath.Min(lane + 96, last)) + second.Sum(x, XMath.Min(lane + 96, last));
                row.X4 += first.Sum(x, XMath.Min(lane + 128, last)) + second.Sum(x, XMath.Min(lane + 128, last));
                row.X5 += first.Sum(x, XMath.Min(lane + 160, last)) + second.Sum(x, XMath.Min(lane + 160, last));
                row.X6 += first.Sum(x, XMath.Min(lane + 192, last)) + second.Sum(x, XMath.Min(lane + 192, last));
                row.X7 += first.Sum(x, XMath.Min(lane + 224, last)) + second.Sum(x, XMath.Min(lane + 224, last));
            }
            return row;
        }
    }
}
