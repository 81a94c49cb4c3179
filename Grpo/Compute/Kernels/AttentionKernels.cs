// The CUDA port of Ops/Attention.cs: causal, grouped-query, key-masked attention with a query offset.
// q (B, T, Hq, D), k and v (B, S, Hkv, D), o (B, T, Hq, D); query head h reads kv head h / (Hq / Hkv);
// query t sits at key position offset + t and attends keys s <= offset + t with keyMask[b*S + s] set.
//   forward, per query row (b, t, h):
//     score_s = q . k_s / sqrt(D) (masked keys -inf);  P = softmax(score) over allowed keys, 0 elsewhere;
//     o = sum_s P_s v_s;  P (B, Hq, T, S) is kept for the backward. No allowed key: o = 0, P = 0.
//   backward, per query row:           dscore_s = (dO . v_s - dO . o) * P_s / sqrt(D)   (kept, like P)
//                                      dq += sum_s dscore_s k_s
//   backward, one thread per (b, s, kv head, d):  dk += sum over the group's heads and t of dscore * q,
//                                                 dv += sum over the group's heads and t of P * dO
// Numbered versions, as in llm.c's dev/cuda; each sum has one writer (no atomics), so every run
// gives the same result:
//   v1 (AttentionKernel, AttentionQueryBackwardKernel): one thread per query row, looping over keys
//      and over d with scalar loads. Measured on the H200 (`grpo bench --figures attention`, Hq = Hkv = 4,
//      D 64): decode (B 64, T 1, S 128, offset 127) forward 4681 us, backward 4747 us; training (B 64,
//      T = S = 128) forward 5643 us, backward 6127 us. ForwardV1 / BackwardV1 (Host.Run's
//      forwardVersion 1) keep it runnable.
//   v2 (AttentionWarpKernel, AttentionQueryBackwardWarpKernel; the Backward's dq kernel): one
//      warp per query row, groups of 4 warps. Lane l holds d = l, l + 32, ... (LaneRow: registers, D <= 256;
//      a larger D falls back to v1). Per key: partial dots over the lane's d, an xor-shuffle sum, and
//      an online softmax (running max and sum, the output accumulator rescaled when the max grows),
//      o += p_s v_s over coalesced rows of v; then a second pass over s writes the normalised P. The
//      query backward likewise: dP_s = dO . v_s by a warp sum, dq += dscore_s k_s on the lanes' d.
//      Measured on the H200: decode forward 148 us, backward 190 us; training forward 1185 us, backward
//      1746 us. At decode it is latency-bound: 256 warps, each a serial chain of 128 keys. ForwardV2 keeps it.
//   v3 (AttentionDecodeKernel in AttentionDecodeKernel.cs; the Forward, every T): one warp per row, the keys
//      spread over the lanes (lane j scores keys j, j + 32, ... with whole dots), one warp max and one
//      warp sum a row, then o += P_s v_s with lanes over d and P_s shuffled from the lane that holds it.
//      Measured on the H200: decode forward 32.9 us (v2 145, v1 4682, same run). Written for decoding,
//      then generalised to any T (a row is (b, t, h) with its own causal limit), and given a query
//      backward of the same shape (AttentionQueryBackwardLanesKernel: dscore_s by lane j's own dot,
//      dq += dscore_s k_s with lanes over d). BackwardV2 keeps v2's.
//   The key/value backward (one thread per k element, about 1 ms a layer in training) is v1 for all.
// v4 (FlashAttentionKernels.cs, FlashAttentionBackward.cs): tiled, FlashAttention-2 style, keeping L instead
// of P; what Ops/Attention.cs runs for T > 1 (training, prefill). v1-v3 stay for decoding and the bench.
// Launchers take device views (a device-resident step calls them without host round trips);
// Host.* (upload, run, download) is for the tests and `grpo check`.
// Tests: Grpo.Tests/Compute/AttentionKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

/// <summary>Sizes of one attention call; HasMask 0 means every key is allowed (the mask view is not read).</summary>
public struct AttentionShape
{
    public int B, T, S, Hq, Hkv, D, Offset, HasMask;
    public float Scale;

    public readonly int Group => Hq / Hkv;
    public readonly int Allowed(int t) => XMath.Min(Offset + t + 1, S);
}

public static partial class AttentionKernels
{
    public static void AttentionKernel(Index1D i, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> probs, AttentionShape a)
    {
        int b = i / (a.T * a.Hq), t = i / a.Hq % a.T, h = i % a.Hq, kvHead = h / a.Group;
        long qAt = (long)(int)i * a.D, pAt = (((long)b * a.Hq + h) * a.T + t) * a.S;
        int allowed = a.Allowed(t);
        float max = float.NegativeInfinity;
        for (int s = 0; s < allowed; s++)
        {
            float score = float.NegativeInfinity;
            if (a.HasMask == 0 || keyMask[b * a.S + s] != 0)
            {
                long kAt = (((long)b * a.S + s) * a.Hkv + kvHead) * a.D;
                float dot = 0f;
                for (int d = 0; d < a.D; d++) dot += q[qAt + d] * k[kAt + d];
                score = dot * a.Scale;
            }
            probs[pAt + s] = score;
            max = XMath.Max(max, score);
        }
        for (int s = XMath.Max(allowed, 0); s < a.S; s++) probs[pAt + s] = 0f;
        if (max == float.NegativeInfinity)   // no allowed key (or none at all): zeros, as on the CPU
        {
            for (int s = 0; s < allowed; s++) probs[pAt + s] = 0f;
            for (int d = 0; d < a.D; d++) output[qAt + d] = 0f;
            return;
        }
        float sum = 0f;
        for (int s = 0; s < allowed; s++)
        {
            float e = XMath.Exp(probs[pAt + s] - max);
            probs[pAt + s] = e;
            sum += e;
        }
        float inverse = 1f / sum;
        for (int s = 0; s < allowed; s++) probs[pAt + s] *= inverse;
        for (int d = 0; d < a.D; d++)
        {
            float acc = 0f;
            for (int s = 0; s < allowed; s++) acc += probs[pAt + s] * v[(((long)b * a.S + s) * a.Hkv + kvHead) * a.D + d];
            output[qAt + d] = acc;
        }
    }

    public static void AttentionQueryBackwardKernel(Index1D i, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> probs, ArrayView<float> dOutput, ArrayView<float> dScores, ArrayView<float> dq, AttentionShape a)
    {
        int b = i / (a.T * a.Hq), t = i / a.Hq % a.T, h = i % a.Hq, kvHead = h / a.Group;
        long qAt = (long)(int)i * a.D, pAt = (((long)b * a.Hq + h) * a.T + t) * a.S;
        int allowed = a.Allowed(t);
        float dOutDotOut = 0f;
        for (int d = 0; d < a.D; d++) dOutDotOut += dOutput[qAt + d] * output[qAt + d];
        for (int s = 0; s < allowed; s++)
        {
            long vAt = (((long)b * a.S + s) * a.Hkv + kvHead) * a.D;
            float dP = 0f;
            for (int d = 0; d < a.D; d++) dP += dOutput[qAt + d] * v[vAt + d];
            dScores[pAt + s] = (dP - dOutDotOut) * probs[pAt + s] * a.Scale;
        }
        for (int s = XMath.Max(allowed, 0); s < a.S; s++) dScores[pAt + s] = 0f;
        for (int d = 0; d < a.D; d++)
        {
            float acc = 0f;
            for (int s = 0; s < allowed; s++) acc += dScores[pAt + s] * k[(((long)b * a.S + s) * a.Hkv + kvHead) * a.D + d];
            dq[qAt + d] += acc;
        }
    }

    /// <summary>Lanes of a warp (32 on NVIDIA, and on the test CPU accelerator) and warps a group of the v2 kernels.</summary>
    public const int Lanes = 32, WarpsPerGroup = 4;

    /// <summary>The largest head size v2 takes: a lane keeps its share of a row in LaneRow's 8 registers.</summary>
    public const int MaxHeadDim = 8 * Lanes;

    /// <summary>v2 forward: one warp per query row, lanes split d (lane, lane + 32, ...), online softmax.</summary>
    public static void AttentionWarpKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> probs, AttentionShape a)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= a.B * a.T * a.Hq) return;   // an idle warp of the last group: all its lanes leave together
        int b = row / (a.T * a.Hq), t = row / a.Hq % a.T, h = row % a.Hq, kvHead = h / a.Group;
        long qAt = (long)row * a.D, pAt = (((long)b * a.Hq + h) * a.T + t) * a.S;
        int allowed = a.Allowed(t);
        var query = LaneRow.Load(q, qAt, lane, a.D);
        var acc = default(LaneRow);   // sum_s exp(score_s - max) v_s, rescaled whenever max grows
        float max = float.NegativeInfinity, sum = 0f;
        for (int s = 0; s < allowed; s++)
        {
            // Every lane holds the same score (an xor butterfly adds the same pairs in every lane), so
            // max, sum and every branch are the same across the warp. The raw score goes into P by
            // lane s % Lanes, the lane that rereads it in the second pass: no lane reads another's write.
            if (a.HasMask != 0 && keyMask[b * a.S + s] == 0)
            {
                if (lane == s % Lanes) probs[pAt + s] = float.NegativeInfinity;
                continue;
            }
            long kvAt = (((long)b * a.S + s) * a.Hkv + kvHead) * a.D;
            float score = WarpSum(query.Dot(k, kvAt, lane, a.D)) * a.Scale;
            if (lane == s % Lanes) probs[pAt + s] = score;
            float newMax = XMath.Max(max, score);
            float rescale = XMath.Exp(max - newMax);   // 0 at the first allowed key (max = -inf), 1 while max stays
            float weight = XMath.Exp(score - newMax);
            sum = sum * rescale + weight;
            acc = acc.ScaleAdd(rescale, weight, v, kvAt, lane, a.D);
            max = newMax;
        }
        bool none = max == float.NegativeInfinity;   // no allowed key: zeros, as v1 and the CPU
        float inverse = none ? 0f : 1f / sum;
        acc.Store(output, qAt, lane, a.D, inverse, add: false);
        for (int s = lane; s < a.S; s += Lanes)
            probs[pAt + s] = s < allowed && !none ? XMath.Exp(probs[pAt + s] - max) * inverse : 0f;
    }

    /// <summary>v2 query backward: one warp per query row, lanes split d; dScores written, dq added.</summary>
    public static void AttentionQueryBackwardWarpKernel(ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> probs, ArrayView<float> dOutput, ArrayView<float> dScores, ArrayView<float> dq, AttentionShape a)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= a.B * a.T * a.Hq) return;
        int b = row / (a.T * a.Hq), t = row / a.Hq % a.T, h = row % a.Hq, kvHead = h / a.Group;
        long qAt = (long)row * a.D, pAt = (((long)b * a.Hq + h) * a.T + t) * a.S;
        int allowed = a.Allowed(t);
        var upstream = LaneRow.Load(dOutput, qAt, lane, a.D);
        float dOutDotOut = WarpSum(upstream.Dot(output, qAt, lane, a.D));
        var grad = default(LaneRow);   // sum_s dscore_s k_s
        for (int s = 0; s < allowed; s++)
        {
            float p = probs[pAt + s];
            if (p == 0f)   // a masked key (or an exp that underflowed): dscore is 0 and adds nothing to dq
            {
                if (lane == s % Lanes) dScores[pAt + s] = 0f;
                continue;
            }
            long kvAt = (((long)b * a.S + s) * a.Hkv + kvHead) * a.D;
            float dScore = (WarpSum(upstream.Dot(v, kvAt, lane, a.D)) - dOutDotOut) * p * a.Scale;
            if (lane == s % Lanes) dScores[pAt + s] = dScore;
            grad = grad.ScaleAdd(1f, dScore, k, kvAt, lane, a.D);
        }
        for (int s = XMath.Max(allowed, 0) + lane; s < a.S; s += Lanes) dScores[pAt + s] = 0f;
        grad.Store(dq, qAt, lane, a.D, 1f, add: true);
    }

    public static void AttentionKeyValueBackwardKernel(Index1D i, ArrayView<float> q, ArrayView<float> probs, ArrayView<float> dOutput,
        ArrayView<float> dScores, ArrayView<float> dk, ArrayView<float> dv, AttentionShape a)
    {
        int d = i % a.D, kvHead = i / a.D % a.Hkv, s = i / (a.D * a.Hkv) % a.S, b = i / (a.D * a.Hkv * a.S);
        float dKey = 0f, dValue = 0f;
        for (int h = kvHead * a.Group; h < (kvHead + 1) * a.Group; h++)
            for (int t = XMath.Max(s - a.Offset, 0); t < a.T; t++)   // causal: key s is seen by queries with offset + t >= s
            {
                long pAt = (((long)b * a.Hq + h) * a.T + t) * a.S + s;
                long qAt = (((long)b * a.T + t) * a.Hq + h) * a.D + d;
                dKey += dScores[pAt] * q[qAt];
                dValue += probs[pAt] * dOutput[qAt];
            }
        dk[i] += dKey;
        dv[i] += dValue;
    }

    /// <summary>The shape of an attention call, checked; queryOffset -1 means S - T.</summary>
    public static AttentionShape Shape(int batch, int queries, int keys, int queryHeads, int kvHeads, int headDim, int queryOffset, bool hasMask)
    {
        if (kvHeads <= 0 || queryHeads % kvHeads != 0 || headDim <= 0)
            throw new ArgumentException($"attention: {queryHeads} query heads are not a multiple of {kvHeads} kv heads (head size {headDim})");
        if (queryOffset < -1) throw new ArgumentOutOfRangeException(nameof(queryOffset), queryOffset, "attention: queryOffset must be >= 0, or -1 for S - T");
        return new AttentionShape
        {
            B = batch, T = queries, S = keys, Hq = queryHeads, Hkv = kvHeads, D = headDim,
            Offset = queryOffset == -1 ? keys - queries : queryOffset, HasMask = hasMask ? 1 : 0, Scale = 1f / MathF.Sqrt(headDim),
        };
    }

    /// <summary>
    /// output (B, T, Hq, D) and probs (B, Hq, T, S); keyMask (B*S) of 0/1, read only when a.HasMask.
    /// v3 (keys across a warp's lanes); see ForwardVersion.
    /// </summary>
    public static void Forward(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> probs, AttentionShape a) =>
        Forward(device, q, k, v, keyMask, output, probs, a, ForwardVersion(a));

    /// <summary>Forward by v1 (a thread per row), for the tests and `grpo bench`.</summary>
    public static void ForwardV1(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> probs, AttentionShape a) =>
        Forward(device, q, k, v, keyMask, output, probs, a, 1);

    /// <summary>Forward by v2 (a warp per row, keys in turn) whatever T, for the tests and `grpo bench`; v1 past MaxHeadDim.</summary>
    public static void ForwardV2(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> probs, AttentionShape a) =>
        Forward(device, q, k, v, keyMask, output, probs, a, a.D <= MaxHeadDim ? 2 : 1);

    /// <summary>The version Forward runs: 3, or 1 for a head past MaxHeadDim (none of our models).</summary>
    public static int ForwardVersion(AttentionShape a) => a.D > MaxHeadDim ? 1 : 3;

    /// <summary>dq, dk, dv += the gradients; dScores (B, Hq, T, S) is scratch the caller provides. v3 for dq.</summary>
    public static void Backward(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> probs, ArrayView<float> dOutput, ArrayView<float> dScores, ArrayView<float> dq, ArrayView<float> dk,
        ArrayView<float> dv, AttentionShape a) =>
        Backward(device, q, k, v, output, probs, dOutput, dScores, dq, dk, dv, a, warpPerRow: true);

    /// <summary>Backward with v2's dq kernel (a warp per row, keys in turn), for the tests and `grpo bench`.</summary>
    public static void BackwardV2(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> probs, ArrayView<float> dOutput, ArrayView<float> dScores, ArrayView<float> dq, ArrayView<float> dk,
        ArrayView<float> dv, AttentionShape a) =>
        Backward(device, q, k, v, output, probs, dOutput, dScores, dq, dk, dv, a, warpPerRow: true, lanesOverKeys: false);

    /// <summary>Backward by v1 (a thread per row for dq), for the tests and `grpo bench`.</summary>
    public static void BackwardV1(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> probs, ArrayView<float> dOutput, ArrayView<float> dScores, ArrayView<float> dq, ArrayView<float> dk,
        ArrayView<float> dv, AttentionShape a) =>
        Backward(device, q, k, v, output, probs, dOutput, dScores, dq, dk, dv, a, warpPerRow: false);

    private static void Forward(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> probs, AttentionShape a, int version)
    {
        CheckViews(a, q, k, v, output, probs);
        if (a.HasMask != 0 && keyMask.Length != (long)a.B * a.S) throw new ArgumentException($"attention: keyMask has {keyMask.Length} entries, expected B * S = {a.B * a.S}");
        if (version == 3 && a.D > MaxHeadDim) throw new ArgumentException($"attention v3 takes D <= {MaxHeadDim}, not {a.D}");
        if (version == 2 && a.D > MaxHeadDim) throw new ArgumentException($"attention v2 takes D <= {MaxHeadDim}, not {a.D}");
        if (q.Length == 0) return;
        int rows = a.B * a.T * a.Hq;
        if (version == 3)
            device.Kernels.Get("attention_decode", acc => WarpKernel(acc, acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionDecodeKernel)))
                (WarpPerRow(rows), q, k, v, keyMask, output, probs, a);
        else if (version == 2)
            device.Kernels.Get("attention_warp", acc => WarpKernel(acc, acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionWarpKernel)))
                (WarpPerRow(rows), q, k, v, keyMask, output, probs, a);
        else
            device.Kernels.Get("attention", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionKernel))
                (rows, q, k, v, keyMask, output, probs, a);
    }

    private static void Backward(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> probs, ArrayView<float> dOutput, ArrayView<float> dScores, ArrayView<float> dq, ArrayView<float> dk,
        ArrayView<float> dv, AttentionShape a, bool warpPerRow, bool lanesOverKeys = true)
    {
        CheckViews(a, q, k, v, output, probs);
        if (dOutput.Length != q.Length || dq.Length != q.Length || dk.Length != k.Length || dv.Length != v.Length || dScores.Length != probs.Length)
            throw new ArgumentException("attention backward: a gradient view's size differs from its tensor's");
        if (q.Length == 0) return;
        int rows = a.B * a.T * a.Hq;
        if (warpPerRow && a.D <= MaxHeadDim && lanesOverKeys)   // a larger head (none of our models) takes v1
            device.Kernels.Get("attention_query_backward_lanes", acc => WarpKernel(acc, acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionQueryBackwardLanesKernel)))
                (WarpPerRow(rows), k, v, output, probs, dOutput, dScores, dq, a);
        else if (warpPerRow && a.D <= MaxHeadDim)
            device.Kernels.Get("attention_query_backward_warp", acc => WarpKernel(acc, acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionQueryBackwardWarpKernel)))
                (WarpPerRow(rows), k, v, output, probs, dOutput, dScores, dq, a);
        else
            device.Kernels.Get("attention_query_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionQueryBackwardKernel))
                (rows, k, v, output, probs, dOutput, dScores, dq, a);
        if (k.Length == 0) return;
        device.Kernels.Get("attention_key_value_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionKeyValueBackwardKernel))
            ((int)k.Length, q, probs, dOutput, dScores, dk, dv, a);
    }

    /// <summary>Groups of WarpsPerGroup warps, one warp per row; the last group's spare warps return at once.</summary>
    private static KernelConfig WarpPerRow(int rows) =>
        new(new Index1D((rows + WarpsPerGroup - 1) / WarpsPerGroup), new Index1D(WarpsPerGroup * Lanes));

    /// <summary>The kernel, once the accelerator is known to have the warp the v2 and v3 kernels are written for.</summary>
    private static TKernel WarpKernel<TKernel>(Accelerator accelerator, TKernel kernel) =>
        accelerator.WarpSize == Lanes ? kernel
            : throw new NotSupportedException($"attention v2 and v3 need a warp of {Lanes} lanes; {accelerator.Name} has {accelerator.WarpSize}");

    private static void CheckViews(AttentionShape a, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output, ArrayView<float> probs)
    {
        long qSize = (long)a.B * a.T * a.Hq * a.D, kvSize = (long)a.B * a.S * a.Hkv * a.D, pSize = (long)a.B * a.Hq * a.T * a.S;
        if (q.Length != qSize || output.Length != qSize || k.Length != kvSize || v.Length != kvSize || probs.Length != pSize)
            throw new ArgumentException($"attention: q {q.Length}, k {k.Length}, v {v.Length}, o {output.Length}, P {probs.Length} do not fit B={a.B} T={a.T} S={a.S} Hq={a.Hq} Hkv={a.Hkv} D={a.D}");
        if (pSize > int.MaxValue) throw new ArgumentException($"attention: P of {pSize} floats is past one launch's 2^31");
    }

    /// <summary>
    /// Host round trips (tests, `grpo check`): o, and dq, dk, dv (from zero) for dOutput. forwardVersion 0 is
    /// Forward's choice, 1, 2 or 3 forces one; the backward's dq kernel is the same version (v3 for 0).
    /// </summary>
    public static class Host
    {
        public static (float[] Output, float[] Dq, float[] Dk, float[] Dv) Run(Device device, float[] q, float[] k, float[] v, bool[]? keyMask,
            AttentionShape a, float[] dOutput, int forwardVersion = 0)
        {
            int[] mask = keyMask == null ? [1] : Array.ConvertAll(keyMask, m => m ? 1 : 0);
            long pSize = (long)a.B * a.Hq * a.T * a.S;
            using var deviceQ = device.UploadToPool<float>(q);
            using var deviceK = device.UploadToPool<float>(k);
            using var deviceV = device.UploadToPool<float>(v);
            using var deviceMask = device.UploadToPool<int>(mask);
            using var output = device.Zeros<float>(q.Length);
            using var probs = device.Zeros<float>(pSize);
            using var deviceDOutput = device.UploadToPool<float>(dOutput);
            using var dScores = device.Zeros<float>(pSize);
            using var dq = device.Zeros<float>(q.Length);
            using var dk = device.Zeros<float>(k.Length);
            using var dv = device.Zeros<float>(v.Length);
            Forward(device, deviceQ.View, deviceK.View, deviceV.View, deviceMask.View, output.View, probs.View, a,
                forwardVersion == 0 ? ForwardVersion(a) : forwardVersion);
            Backward(device, deviceQ.View, deviceK.View, deviceV.View, output.View, probs.View, deviceDOutput.View, dScores.View,
                dq.View, dk.View, dv.View, a, warpPerRow: forwardVersion != 1, lanesOverKeys: forwardVersion != 2);
            return (Device.DownloadArray<float>(output.View), Device.DownloadArray<float>(dq.View),
                Device.DownloadArray<float>(dk.View), Device.DownloadArray<float>(dv.View));
        }
    }
}
