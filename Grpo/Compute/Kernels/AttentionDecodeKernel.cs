// Attention v3, the forward for one new query per row (T == 1: a decode step with a KV cache). v2 walks
// the keys one after another, a warp-wide dot sum and an exp on every step; here the keys are spread over
// the lanes instead, so a row costs a handful of dependent steps however many keys it has. One warp per
// row (b, h), groups of WarpsPerGroup warps, as v2; the equations are AttentionKernels.cs's:
//   1. scores: lane j takes keys s = j, j + 32, ... < allowed and does the whole dot q . k_s over d
//      (q read from global: every lane reads the same q[d], one broadcast); a masked key scores -inf.
//      The raw score goes into P[s], which only lane j reads back.
//   2. max: one xor-shuffle max over the lanes' maxima; sum of exp(score - max): one xor-shuffle sum.
//      A lane with no key, or only masked ones, holds -inf / 0 and changes neither. A row with no
//      allowed key (max -inf) gets o = 0 and P = 0, as v1, v2 and Ops/Attention.cs.
//   3. per block of 32 keys: lane j turns its raw score into P[s] = exp(score - max) / sum (0 for
//      allowed <= s < S), and the warp adds o[d] += P_s v_s[d] with lanes over d (d = lane, lane + 32,
//      ..., coalesced rows of v), P_s taken by Warp.Shuffle from lane j; four keys a step, so four rows
//      of v are loaded before they are needed.
// Tests: Grpo.Tests/Compute/AttentionKernelTests.cs (against the reference, v2 and v1), PtxCompileTests.cs.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static partial class AttentionKernels
{
    /// <summary>v3 forward, T == 1 only: one warp per row (b, h), lanes split the keys for the scores and d for o.</summary>
    public static void AttentionDecodeKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> probs, AttentionShape a)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= a.B * a.Hq) return;   // an idle warp of the last group: all its lanes leave together
        int b = row / a.Hq, h = row % a.Hq, kvHead = h / a.Group;
        long qAt = (long)row * a.D, pAt = (long)row * a.S;   // T == 1: o's row and P's row are both row
        int allowed = a.Allowed(0);

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
            for (int j = 0; block + j <= last; j += 4)
            {
                float p0 = Warp.Shuffle(p, j), p1 = Warp.Shuffle(p, j + 1), p2 = Warp.Shuffle(p, j + 2), p3 = Warp.Shuffle(p, j + 3);
                acc = acc.AddFour(v, lane, a.D,
                    p0, KeyValueAt(a, b, block + j, kvHead), p1, KeyValueAt(a, b, XMath.Min(block + j + 1, last), kvHead),
                    p2, KeyValueAt(a, b, XMath.Min(block + j + 2, last), kvHead), p3, KeyValueAt(a, b, XMath.Min(block + j + 3, last), kvHead));
            }
        }
        acc.Store(output, qAt, lane, a.D, 1f, add: false);
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

    private partial struct LaneRow
    {
        /// <summary>row + w0 x[at0 ..] + w1 x[at1 ..] + w2 x[at2 ..] + w3 x[at3 ..], each over the lane's d.</summary>
        public readonly LaneRow AddFour(ArrayView<float> x, int lane, int D, float w0, long at0, float w1, long at1, float w2, long at2, float w3, long at3) => new()
        {
            X0 = X0 + Four(x, lane, D, w0, at0, w1, at1, w2, at2, w3, at3),
            X1 = X1 + Four(x, lane + 32, D, w0, at0, w1, at1, w2, at2, w3, at3),
            X2 = X2 + Four(x, lane + 64, D, w0, at0, w1, at1, w2, at2, w3, at3),
            X3 = X3 + Four(x, lane + 96, D, w0, at0, w1, at1, w2, at2, w3, at3),
            X4 = X4 + Four(x, lane + 128, D, w0, at0, w1, at1, w2, at2, w3, at3),
            X5 = X5 + Four(x, lane + 160, D, w0, at0, w1, at1, w2, at2, w3, at3),
            X6 = X6 + Four(x, lane + 192, D, w0, at0, w1, at1, w2, at2, w3, at3),
            X7 = X7 + Four(x, lane + 224, D, w0, at0, w1, at1, w2, at2, w3, at3),
        };

        private static float Four(ArrayView<float> x, int d, int D, float w0, long at0, float w1, long at1, float w2, long at2, float w3, long at3) =>
            d < D ? w0 * x[at0 + d] + w1 * x[at1 + d] + w2 * x[at2 + d] + w3 * x[at3 + d] : 0f;
    }
}
