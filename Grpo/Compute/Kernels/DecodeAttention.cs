// The fused decode step's attention (DecodeKernels.cs has the layer kernel that calls it): for one row, each
// query head h (kv head h / (Hq / Hkv)) over the cached keys 0 .. Length under the row's key mask.
//   score_s = q . k_s / sqrt(D) (a masked key: -inf),  p_s = e^(score_s - max) / sum,  o = sum_s p_s v_s
// A row with no allowed key outputs o = 0 (as Ops/Attention.cs).
// Attend (v2, groups of fewer than 2 Hq warps): a warp per head; lanes take keys s = lane, lane + 32, ...
//   whole dots (keys read as Float4), scores kept in the warp's shared row, max and sum by warp shuffles,
//   then o[d] with lanes over d, four keys a step.
// AttendInParts (v3, 16 warps on CUDA): several warps a head, parts summed in a fixed order.
// Tests: Grpo.Tests/Compute/FusedDecodeTests.cs (2-warp and 8-warp groups on the CPU accelerator).
using ILGPU;
using ILGPU.Algorithms;
using Float4 = Grpo.Compute.Kernels.MatMulKernels.Float4;

namespace Grpo.Compute.Kernels;

public static partial class DecodeKernels
{
    /// <summary>attended (Hq, D) for this row: a warp per query head over the cached keys 0 .. Length (see the header).</summary>
    private static void Attend(DecodeLayerArgs a, ArrayView<float> q, ArrayView<float> attended, ArrayView<float> scores, int row, int warp, int warps, int lane)
    {
        int allowed = a.Length + 1, group = a.Hq / a.Hkv, kvDim = a.Hkv * a.D;
        var keys4 = a.CacheK.Cast<Float4>();
        for (int h = warp; h < a.Hq; h += warps)
        {
            int kvHead = h / group;
            float laneMax = float.NegativeInfinity;
            for (int s = lane; s < allowed; s += Lanes)
            {
                float score = float.NegativeInfinity;
                if (a.KeyMask[row * a.Capacity + s] != 0)
                {
                    long kAt = (((long)row * a.Capacity + s) * kvDim + kvHead * a.D) / 4;   // D % 4 == 0
                    float dot0 = 0f, dot1 = 0f;
                    for (int d = 0; d < a.D; d += 4)
                    {
                        var key = keys4[kAt + d / 4];
                        int qAt = h * a.D + d;
                        dot0 += q[qAt] * key.X + q[qAt + 1] * key.Y;
                        dot1 += q[qAt + 2] * key.Z + q[qAt + 3] * key.W;
                    }
                    score = (dot0 + dot1) * a.Scale;
                }
                scores[s] = score;
                laneMax = XMath.Max(laneMax, score);
            }
            float max = WarpMax(laneMax);
            bool none = max == float.NegativeInfinity;
            float laneSum = 0f;
            for (int s = lane; s < allowed; s += Lanes)
            {
                float p = none ? 0f : XMath.Exp(scores[s] - max);
                scores[s] = p;
                laneSum += p;
            }
            float inverse = none ? 0f : 1f / WarpSum(laneSum);
            Warp.Barrier();   // every lane's p in shared memory before the lanes read them all
            for (int d = lane; d < a.D; d += Lanes)
            {
                float o0 = 0f, o1 = 0f, o2 = 0f, o3 = 0f;   // four keys a step: four rows of v in flight
                long vAt = (long)row * a.Capacity * kvDim + kvHead * a.D + d;
                int s = 0;
                for (; s + 3 < allowed; s += 4)
                {
                    o0 += scores[s] * a.CacheV[vAt + (long)s * kvDim];
                    o1 += scores[s + 1] * a.CacheV[vAt + (long)(s + 1) * kvDim];
                    o2 += scores[s + 2] * a.CacheV[vAt + (long)(s + 2) * kvDim];
                    o3 += scores[s + 3] * a.CacheV[vAt + (long)(s + 3) * kvDim];
                }
                for (; s < allowed; s++) o0 += scores[s] * a.CacheV[vAt + (long)s * kvDim];
                attended[h * a.D + d] = (o0 + o1 + o2 + o3) * inverse;
            }
            Warp.Barrier();   // the scores row is reused by the warp's next head
        }
    }

    /// <summary>
    /// attended (Hq, D) for this row with several warps a head (v3; warps >= 2 Hq): warp w serves head w % Hq
    /// as part w / Hq of parts = warps / Hq (warps past parts * Hq only meet the barriers). Scores: part p takes
    /// keys p * 32 + lane + j * parts * 32, each a whole dot with four Float4 of the key in flight; the head's
    /// scores share one shared row. Its max and sum are the parts' (added in part order); then part p adds
    /// P v over its contiguous block of keys, lanes along d, and part 0 adds the parts' sums in order. With
    /// 16 warps and 4 heads every warp works, where v2 left 12 of them waiting at the barrier while 4 walked
    /// all the keys one dependent load at a time.
    /// </summary>
    private static void AttendInParts(DecodeLayerArgs a, ArrayView<float> q, ArrayView<float> attended, ArrayView<float> scores,
        ArrayView<float> warpParts, int row, int warp, int warps, int lane)
    {
        int parts = warps / a.Hq, h = warp % a.Hq, part = warp / a.Hq;
        bool working = part < parts;
        int allowed = a.Length + 1, group = a.Hq / a.Hkv, kvDim = a.Hkv * a.D, kvHead = h / group;
        var keys4 = a.CacheK.Cast<Float4>();
        var headScores = scores.SubView(h * a.Capacity, a.Capacity);
        var partO = warpParts.SubView(0, warps * a.D);                   // [warp][d]
        var partMax = warpParts.SubView(warps * a.D, warps);
        var partSum = warpParts.SubView(warps * a.D + warps, warps);

        float laneMax = float.NegativeInfinity;
        if (working)
            for (int s = part * Lanes + lane; s < allowed; s += parts * Lanes)
            {
                float score = float.NegativeInfinity;
                if (a.KeyMask[row * a.Capacity + s] != 0)
                {
                    long kAt = (((long)row * a.Capacity + s) * kvDim + kvHead * a.D) / 4;   // D % 4 == 0
                    int qAt = h * a.D;
                    float dot0 = 0f, dot1 = 0f, dot2 = 0f, dot3 = 0f;
                    int d4 = 0;
                    for (; d4 + 3 < a.D / 4; d4 += 4)
                    {
                        Float4 k0 = keys4[kAt + d4], k1 = keys4[kAt + d4 + 1], k2 = keys4[kAt + d4 + 2], k3 = keys4[kAt + d4 + 3];
                        int at = qAt + 4 * d4;
                        dot0 += q[at] * k0.X + q[at + 1] * k0.Y + q[at + 2] * k0.Z + q[at + 3] * k0.W;
                        dot1 += q[at + 4] * k1.X + q[at + 5] * k1.Y + q[at + 6] * k1.Z + q[at + 7] * k1.W;
                        dot2 += q[at + 8] * k2.X + q[at + 9] * k2.Y + q[at + 10] * k2.Z + q[at + 11] * k2.W;
                        dot3 += q[at + 12] * k3.X + q[at + 13] * k3.Y + q[at + 14] * k3.Z + q[at + 15] * k3.W;
                    }
                    for (; d4 < a.D / 4; d4++)
                    {
                        Float4 k0 = keys4[kAt + d4];
                        int at = qAt + 4 * d4;
                        dot0 += q[at] * k0.X + q[at + 1] * k0.Y + q[at + 2] * k0.Z + q[at + 3] * k0.W;
                    }
                    score = (dot0 + dot1 + dot2 + dot3) * a.Scale;
                }
                headScores[s] = score;
                laneMax = XMath.Max(laneMax, score);
            }
        float warpMax = WarpMax(laneMax);
        if (lane == 0) partMax[warp] = warpMax;
        Group.Barrier();

        float max = float.NegativeInfinity;
        for (int p = 0; p < parts; p++) max = XMath.Max(max, partMax[h + p * a.Hq]);
        bool none = max == float.NegativeInfinity;
        float laneSum = 0f;
        if (working)
            for (int s = part * Lanes + lane; s < allowed; s += parts * Lanes)
            {
                float e = none ? 0f : XMath.Exp(headScores[s] - max);
                headScores[s] = e;
                laneSum += e;
            }
        float warpTotal = WarpSum(laneSum);
        if (lane == 0) partSum[warp] = warpTotal;
        Group.Barrier();

        if (working)
        {
            int block = (allowed + parts - 1) / parts, first = part * block, last = XMath.Min(allowed, first + block);
            for (int d = lane; d < a.D; d += Lanes)
            {
                float o0 = 0f, o1 = 0f, o2 = 0f, o3 = 0f;   // four keys a step: four rows of v in flight
                long vAt = (long)row * a.Capacity * kvDim + kvHead * a.D + d;
                int s = first;
                for (; s + 3 < last; s += 4)
                {
                    o0 += headScores[s] * a.CacheV[vAt + (long)s * kvDim];
                    o1 += headScores[s + 1] * a.CacheV[vAt + (long)(s + 1) * kvDim];
                    o2 += headScores[s + 2] * a.CacheV[vAt + (long)(s + 2) * kvDim];
                    o3 += headScores[s + 3] * a.CacheV[vAt + (long)(s + 3) * kvDim];
                }
                for (; s < last; s++) o0 += headScores[s] * a.CacheV[vAt + (long)s * kvDim];
                partO[warp * a.D + d] = o0 + o1 + o2 + o3;
            }
        }
        Group.Barrier();

        if (working && part == 0)
        {
            float total = 0f;
            for (int p = 0; p < parts; p++) total += partSum[h + p * a.Hq];
            float inverse = none ? 0f : 1f / total;
            for (int d = lane; d < a.D; d += Lanes)
            {
                float o = 0f;
                for (int p = 0; p < parts; p++) o += partO[(h + p * a.Hq) * a.D + d];
                attended[h * a.D + d] = o * inverse;
            }
        }
    }

    private static float WarpSum(float value)
    {
        for (int delta = Lanes / 2; delta > 0; delta /= 2) value += Warp.ShuffleXor(value, delta);
        return value;
    }

    private static float WarpMax(float value)
    {
        for (int delta = Lanes / 2; delta > 0; delta /= 2) value = XMath.Max(value, Warp.ShuffleXor(value, delta));
        return value;
    }
}
