// Scaled dot-product attention: causal, grouped-query, with a key mask (padding).
//
// For batch b, query head h (reading kv head g = h / (Hq / Hkv)) and query t at position p = offset + t:
//   score_s = q_t . k_s / sqrt(D)                 for the allowed keys: s <= p and keyMask[b*S + s]
//   P_s = softmax_s(score)  (over allowed keys only; the others get P_s = 0)
//   o_t = sum_s P_s v_s
// Backward, with dO the output gradient and dP_s = dO . v_s:
//   dv_s += P_s dO      dscore_s = P_s (dP_s - sum_s' P_s' dP_s') = P_s (dO . v_s - dO . o_t)
//   dq_t += sum_s dscore_s k_s / sqrt(D)          dk_s += dscore_s q_t / sqrt(D)
// Shapes: q (B, T, Hq, D), k and v (B, S, Hkv, D) -> o (B, T, Hq, D). queryOffset -1 means S - T:
// the full forward has S == T (offset 0); decoding with a KV cache has T new queries after S - T cached keys.
// A query with no allowed key (all padding before it) outputs zeros and passes zero gradient.
// Hand-worked: with a single key, P = [1] whatever the score, so the output is v exactly.
// The forward keeps P (B, Hq, T, S) for the backward; under NoGrad it keeps only one row at a time.
// Tests: Grpo.Tests/Ops/OpsBTests.cs.
using System.Numerics.Tensors;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, bool[]? keyMask = null, int queryOffset = -1)
    {
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"Attention needs q (B, T, Hq, D), k and v (B, S, Hkv, D), got {ShapeText(q)}, {ShapeText(k)}, {ShapeText(v)}");
        CheckSameShape(k, v, "Attention (k and v)");
        int B = q.Dim(0), T = q.Dim(1), Hq = q.Dim(2), D = q.Dim(3);
        int S = k.Dim(1), Hkv = k.Dim(2);
        if (k.Dim(0) != B || k.Dim(3) != D || Hkv == 0 || Hq % Hkv != 0)
            throw new ArgumentException($"Attention: q {ShapeText(q)} and k {ShapeText(k)} disagree (batch, head size, or Hq not a multiple of Hkv)");
        if (keyMask != null && keyMask.Length != B * S)
            throw new ArgumentException($"Attention: keyMask has {keyMask.Length} entries, expected B * S = {B * S}");
        if (queryOffset < -1) throw new ArgumentOutOfRangeException(nameof(queryOffset), queryOffset, "Attention: queryOffset must be >= 0, or -1 for S - T");
        int offset = queryOffset == -1 ? S - T : queryOffset;
        int group = Hq / Hkv;
        float scale = 1f / MathF.Sqrt(D);

        bool keepProbs = Autograd.IsRecording && (q.RequiresGrad || k.RequiresGrad || v.RequiresGrad);
        float[]? probs = keepProbs ? new float[(long)B * Hq * T * S] : null;   // (B, Hq, T, S)
        var output = Tensor.Zeros(B, T, Hq, D);
        long workPerPair = (long)T * S * D;

        // One (batch, query head) pair per task: each writes its own output rows and P block.
        SoftmaxRows.For(B * Hq, workPerPair, probs == null ? S : 0, (pair, scratch) =>
        {
            int b = pair / Hq, h = pair % Hq, kvHead = h / group;
            for (int t = 0; t < T; t++)
            {
                int last = Math.Min(offset + t, S - 1);   // causal: keys 0..last
                var p = probs != null ? probs.AsSpan((pair * T + t) * S, S) : scratch;
                var qRow = q.Data.AsSpan(((b * T + t) * Hq + h) * D, D);
                float max = float.NegativeInfinity;
                for (int s = 0; s <= last; s++)
                {
                    if (keyMask != null && !keyMask[b * S + s]) { p[s] = float.NegativeInfinity; continue; }
                    float score = TensorPrimitives.Dot(qRow, k.Data.AsSpan(((b * S + s) * Hkv + kvHead) * D, D)) * scale;
                    p[s] = score;
                    if (score > max) max = score;
                }
                if (float.IsNegativeInfinity(max)) { p[..(last + 1)].Clear(); continue; }
                var allowed = p[..(last + 1)];
                TensorPrimitives.Subtract(allowed, max, allowed);
                TensorPrimitives.Exp(allowed, allowed);   // masked keys: e^-inf = 0
                TensorPrimitives.Multiply(allowed, 1f / TensorPrimitives.Sum(allowed), allowed);

                var outRow = output.Data.AsSpan(((b * T + t) * Hq + h) * D, D);
                for (int s = 0; s <= last; s++)
                    if (allowed[s] != 0f)
                        TensorPrimitives.MultiplyAdd(v.Data.AsSpan(((b * S + s) * Hkv + kvHead) * D, D), allowed[s], outRow, outRow);
            }
        });

        Autograd.Record(output, [q, k, v], () =>
        {
            var dOut = output.Grad!;
            float[]? dq = q.RequiresGrad ? q.GradOrCreate() : null;
            float[]? dk = k.RequiresGrad ? k.GradOrCreate() : null;
            float[]? dv = v.RequiresGrad ? v.GradOrCreate() : null;
            // One (batch, kv head) pair per task: the query heads of a group share dk and dv rows,
            // so they go to the same task and no two tasks write the same gradient.
            SoftmaxRows.For(B * Hkv, workPerPair * group, 0, (pair, _) =>
            {
                int b = pair / Hkv, kvHead = pair % Hkv;
                for (int h = kvHead * group; h < (kvHead + 1) * group; h++)
                    for (int t = 0; t < T; t++)
                    {
                        int last = Math.Min(offset + t, S - 1);
                        int qAt = ((b * T + t) * Hq + h) * D;
                        var p = probs!.AsSpan(((b * Hq + h) * T + t) * S, S);
                        var dORow = dOut.AsSpan(qAt, D);
                        var qRow = q.Data.AsSpan(qAt, D);
                        float dOdotO = TensorPrimitives.Dot(dORow, output.Data.AsSpan(qAt, D));
                        for (int s = 0; s <= last; s++)
                        {
                            float ps = p[s];
                            if (ps == 0f) continue;   // masked, or no allowed key: no gradient
                            int kvAt = ((b * S + s) * Hkv + kvHead) * D;
                            var vRow = v.Data.AsSpan(kvAt, D);
                            if (dv != null) TensorPrimitives.MultiplyAdd(dORow, ps, dv.AsSpan(kvAt, D), dv.AsSpan(kvAt, D));
                            float dScore = ps * (TensorPrimitives.Dot(dORow, vRow) - dOdotO) * scale;
                            if (dq != null) TensorPrimitives.MultiplyAdd(k.Data.AsSpan(kvAt, D), dScore, dq.AsSpan(qAt, D), dq.AsSpan(qAt, D));
                            if (dk != null) TensorPrimitives.MultiplyAdd(qRow, dScore, dk.AsSpan(kvAt, D), dk.AsSpan(kvAt, D));
                        }
                    }
            });
        });
        return output;
    }
}
