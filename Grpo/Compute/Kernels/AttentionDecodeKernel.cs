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
//      free of branches (AddBlock, LaneRow.AddEight in AttentionLanes.cs), so eight rows of v are in flight at once.
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
            acc = AddBlock(acc, v, p, a, b, kvHead, block, last, lane);
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
            grad = AddBlock(grad, k, dScore, a, b, kvHead, block, last, lane);
        }
        grad.Store(dq, qAt, lane, a.D, 1f, add: true);
    }

    /// <summary>
    /// acc + sum over the keys s = block .. last of weight_s x_s (rows of k or v), over the lane's d, where
    /// weight_s is lane (s - block)'s weight, taken by Warp.Shuffle: eight keys a step, their loads free of
    /// branches (a key past last reads last's row with weight 0). last is the same in every lane, so every
    /// lane takes every shuffle.
    /// </summary>
    private static LaneRow AddBlock(LaneRow acc, ArrayView<float> x, float weight, AttentionShape a, int b, int kvHead, int block, int last, int lane)
    {
        for (int j = 0; block + j <= last; j += 8)
        {
            var first = new WeightedRows
            {
                W0 = Warp.Shuffle(weight, j), W1 = Warp.Shuffle(weight, j + 1), W2 = Warp.Shuffle(weight, j + 2), W3 = Warp.Shuffle(weight, j + 3),
                At0 = KeyValueAt(a, b, block + j, kvHead), At1 = KeyValueAt(a, b, XMath.Min(block + j + 1, last), kvHead),
                At2 = KeyValueAt(a, b, XMath.Min(block + j + 2, last), kvHead), At3 = KeyValueAt(a, b, XMath.Min(block + j + 3, last), kvHead),
            };
            var second = new WeightedRows
            {
                W0 = Warp.Shuffle(weight, j + 4), W1 = Warp.Shuffle(weight, j + 5), W2 = Warp.Shuffle(weight, j + 6), W3 = Warp.Shuffle(weight, j + 7),
                At0 = KeyValueAt(a, b, XMath.Min(block + j + 4, last), kvHead), At1 = KeyValueAt(a, b, XMath.Min(block + j + 5, last), kvHead),
                At2 = KeyValueAt(a, b, XMath.Min(block + j + 6, last), kvHead), At3 = KeyValueAt(a, b, XMath.Min(block + j + 7, last), kvHead),
            };
            acc = acc.AddEight(x, lane, a.D, first, second);
        }
        return acc;
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
}
