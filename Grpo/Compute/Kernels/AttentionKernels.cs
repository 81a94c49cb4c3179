// The CUDA port of Ops/Attention.cs: causal, grouped-query, key-masked attention with a query offset.
// q (B, T, Hq, D), k and v (B, S, Hkv, D), o (B, T, Hq, D); query head h reads kv head h / (Hq / Hkv);
// query t sits at key position offset + t and attends keys s <= offset + t with keyMask[b*S + s] set.
//   forward, one thread per query (b, t, h):
//     score_s = q . k_s / sqrt(D) (masked keys -inf);  P = softmax(score) over allowed keys, 0 elsewhere;
//     o = sum_s P_s v_s;  P (B, Hq, T, S) is kept for the backward. No allowed key: o = 0, P = 0.
//   backward, one thread per query:    dscore_s = (dO . v_s - dO . o) * P_s / sqrt(D)   (kept, like P)
//                                      dq += sum_s dscore_s k_s
//   backward, one thread per (b, s, kv head, d):  dk += sum over the group's heads and t of dscore * q,
//                                                 dv += sum over the group's heads and t of P * dO
// This is the straightforward first version: no shared-memory tiles, no online softmax (so P and
// dscore, B * Hq * T * S floats each, live in device memory), and every sum is a plain loop: each
// output has one writer, so there are no atomics and the result is the same on every run.
// A flash-attention-style tiled kernel (scores in shared memory, online softmax) is the next version.
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

public static class AttentionKernels
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

    /// <summary>output (B, T, Hq, D) and probs (B, Hq, T, S); keyMask (B*S) of 0/1, read only when a.HasMask.</summary>
    public static void Forward(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> probs, AttentionShape a)
    {
        CheckViews(a, q, k, v, output, probs);
        if (a.HasMask != 0 && keyMask.Length != (long)a.B * a.S) throw new ArgumentException($"attention: keyMask has {keyMask.Length} entries, expected B * S = {a.B * a.S}");
        if (q.Length == 0) return;
        device.Kernels.Get("attention", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionKernel))
            (a.B * a.T * a.Hq, q, k, v, keyMask, output, probs, a);
    }

    /// <summary>dq, dk, dv += the gradients; dScores (B, Hq, T, S) is scratch the caller provides.</summary>
    public static void Backward(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> probs, ArrayView<float> dOutput, ArrayView<float> dScores, ArrayView<float> dq, ArrayView<float> dk,
        ArrayView<float> dv, AttentionShape a)
    {
        CheckViews(a, q, k, v, output, probs);
        if (dOutput.Length != q.Length || dq.Length != q.Length || dk.Length != k.Length || dv.Length != v.Length || dScores.Length != probs.Length)
            throw new ArgumentException("attention backward: a gradient view's size differs from its tensor's");
        if (q.Length == 0) return;
        device.Kernels.Get("attention_query_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionQueryBackwardKernel))
            (a.B * a.T * a.Hq, k, v, output, probs, dOutput, dScores, dq, a);
        if (k.Length == 0) return;
        device.Kernels.Get("attention_key_value_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionKeyValueBackwardKernel))
            ((int)k.Length, q, probs, dOutput, dScores, dk, dv, a);
    }

    private static void CheckViews(AttentionShape a, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output, ArrayView<float> probs)
    {
        long qSize = (long)a.B * a.T * a.Hq * a.D, kvSize = (long)a.B * a.S * a.Hkv * a.D, pSize = (long)a.B * a.Hq * a.T * a.S;
        if (q.Length != qSize || output.Length != qSize || k.Length != kvSize || v.Length != kvSize || probs.Length != pSize)
            throw new ArgumentException($"attention: q {q.Length}, k {k.Length}, v {v.Length}, o {output.Length}, P {probs.Length} do not fit B={a.B} T={a.T} S={a.S} Hq={a.Hq} Hkv={a.Hkv} D={a.D}");
        if (pSize > int.MaxValue) throw new ArgumentException($"attention: P of {pSize} floats is past one launch's 2^31");
    }

    /// <summary>Host round trips (tests, `grpo check`): o, and dq, dk, dv (from zero) for dOutput.</summary>
    public static class Host
    {
        public static (float[] Output, float[] Dq, float[] Dk, float[] Dv) Run(Device device, float[] q, float[] k, float[] v, bool[]? keyMask,
            AttentionShape a, float[] dOutput)
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
            Forward(device, deviceQ.View, deviceK.View, deviceV.View, deviceMask.View, output.View, probs.View, a);
            Backward(device, deviceQ.View, deviceK.View, deviceV.View, output.View, probs.View, deviceDOutput.View, dScores.View,
                dq.View, dk.View, dv.View, a);
            return (Device.DownloadArray<float>(output.View), Device.DownloadArray<float>(dq.View),
                Device.DownloadArray<float>(dk.View), Device.DownloadArray<float>(dv.View));
        }
    }
}
