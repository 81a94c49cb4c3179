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
// Speed (this is on the training hot path): every product is a row vector times a matrix
// (AttentionLayout.VectorTimesMatrix, 16 outputs per register). Scores read K transposed to (D, S),
// padded to whole vectors, so they run along the keys over only the causal part; P V and dscore K
// read V and K in place. A few queries (decoding) score each key with a dot product instead, K read
// in place, and keys past the last query (a KV cache's unfilled tail) are never touched. The backward
// sums dk and dv transposed (rank-one updates along the keys) and adds them in at the end.
// Tests: Grpo.Tests/Ops/OpsBTests.cs.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;

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
        if (OnGpu("Attention", q, k, v)) return AttentionOnDevice(q, k, v, keyMask, B, T, S, Hq, Hkv, D, offset, scale);

        bool keepProbs = Autograd.IsRecording && (q.RequiresGrad || k.RequiresGrad || v.RequiresGrad);
        float[]? probs = keepProbs ? new float[(long)B * Hq * T * S] : null;   // (B, Hq, T, S)
        var output = Tensor.Zeros(B, T, Hq, D);
        var maskBias = AttentionLayout.MaskBias(keyMask, B * S);   // (B, S): 0 or -inf
        long workPerPair = (long)T * S * D;
        // Transposed K and V rows are padded to a multiple of 16 keys, so a row of scores is computed
        // in whole vectors (the extra columns are future or padding keys, computed and then ignored).
        int paddedKeys = (S + 15) & ~15, keyBlock = D * paddedKeys;

        // Keys past the last query's position are never read (in a KV cache, the unfilled tail).
        int keysRead = Math.Min(S, offset + T);
        // Transposing K costs a pass over its rows, repaid only when several queries read it; a few
        // queries (decoding: one per sequence) take one dot product per key instead, reading K in place.
        bool transposeKeys = T >= 4;

        // One (batch, query head) pair per task: each writes its own output rows and P block.
        // Scratch: K of the pair's kv head transposed to (D, paddedKeys), and one row of scores.
        SoftmaxRows.For(B * Hq, workPerPair, keyBlock + paddedKeys, (pair, scratch) =>
        {
            int b = pair / Hq, h = pair % Hq, kvHead = h / group;
            int kvAt = (b * S * Hkv + kvHead) * D;   // row 0 of this kv head
            var keysT = scratch[..keyBlock];
            if (transposeKeys) AttentionLayout.GatherTransposed(k.Data, keysT, paddedKeys, b, kvHead, keysRead, S, Hkv, D);
            for (int t = 0; t < T; t++)
            {
                int allowed = Math.Min(offset + t + 1, S);   // causal: keys 0 .. offset + t
                if (allowed <= 0) continue;
                int qAt = ((b * T + t) * Hq + h) * D;
                var qRow = q.Data.AsSpan(qAt, D);
                // score_s = sum_d q_d k_sd / sqrt(D), along the rows of K^T (the keys stay contiguous).
                var scores = scratch.Slice(keyBlock, AttentionLayout.PaddedWidth(allowed, paddedKeys));
                if (transposeKeys) AttentionLayout.VectorTimesMatrix(qRow, keysT, paddedKeys, scores, accumulate: false);
                else AttentionLayout.MatrixTimesVector(k.Data.AsSpan(kvAt), Hkv * D, qRow, scores[..allowed]);
                var p = scores[..allowed];
                TensorPrimitives.Multiply(p, scale, p);
                if (maskBias != null) TensorPrimitives.Add(p, maskBias.AsSpan(b * S, allowed), p);
                float max = TensorPrimitives.Max(p);
                if (float.IsNegativeInfinity(max)) { p.Clear(); continue; }   // no allowed key: zeros
                TensorPrimitives.Subtract(p, max, p);
                TensorPrimitives.Exp(p, p);                                    // masked keys: e^-inf = 0
                TensorPrimitives.Multiply(p, 1f / TensorPrimitives.Sum(p), p);
                if (probs != null) p.CopyTo(probs.AsSpan((pair * T + t) * S, allowed));
                // o = sum_s P_s v_s, reading v in place: row s of head kvHead sits Hkv * D after row s - 1.
                AttentionLayout.VectorTimesMatrix(p, v.Data.AsSpan(kvAt), Hkv * D, output.Data.AsSpan(qAt, D), accumulate: false);
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
            SoftmaxRows.For(B * Hkv, workPerPair * group, 3 * keyBlock + 2 * paddedKeys, (pair, scratch) =>
            {
                int b = pair / Hkv, kvHead = pair % Hkv;
                int kvAt = (b * S * Hkv + kvHead) * D;
                var valuesT = scratch[..keyBlock];
                var dKeysT = scratch.Slice(keyBlock, keyBlock);
                var dValuesT = scratch.Slice(2 * keyBlock, keyBlock);
                var paddedProbs = scratch.Slice(3 * keyBlock + paddedKeys, paddedKeys);
                AttentionLayout.GatherTransposed(v.Data, valuesT, paddedKeys, b, kvHead, keysRead, S, Hkv, D);
                dKeysT.Clear();
                dValuesT.Clear();
                for (int h = kvHead * group; h < (kvHead + 1) * group; h++)
                    for (int t = 0; t < T; t++)
                    {
                        int allowed = Math.Min(offset + t + 1, S);
                        if (allowed <= 0) continue;
                        int qAt = ((b * T + t) * Hq + h) * D;
                        int width = AttentionLayout.PaddedWidth(allowed, paddedKeys);
                        var p = probs!.AsSpan(((b * Hq + h) * T + t) * S, allowed);
                        var dORow = dOut.AsSpan(qAt, D);
                        var qRow = q.Data.AsSpan(qAt, D);
                        // dscore_s = P_s (dO . v_s - dO . o) / sqrt(D); masked keys have P_s = 0.
                        var dScores = scratch.Slice(3 * keyBlock, width);
                        AttentionLayout.VectorTimesMatrix(dORow, valuesT, paddedKeys, dScores, accumulate: false);
                        var dScore = dScores[..allowed];
                        TensorPrimitives.Subtract(dScore, TensorPrimitives.Dot(dORow, output.Data.AsSpan(qAt, D)), dScore);
                        TensorPrimitives.Multiply(dScore, p, dScore);
                        TensorPrimitives.Multiply(dScore, scale, dScore);
                        if (dq != null)
                            AttentionLayout.VectorTimesMatrix(dScore, k.Data.AsSpan(kvAt), Hkv * D, dq.AsSpan(qAt, D), accumulate: true);
                        // dk^T += q dscore^T and dv^T += dO P^T, over whole vectors: the columns past
                        // `allowed` (future keys) get zeros, so both rows are zero-padded first.
                        dScores[allowed..].Clear();
                        var pRow = paddedProbs[..width];
                        p.CopyTo(pRow);
                        pRow[allowed..].Clear();
                        AttentionLayout.AddOuterProduct(qRow, dScores, dKeysT, paddedKeys);
                        AttentionLayout.AddOuterProduct(dORow, pRow, dValuesT, paddedKeys);
                    }
                if (dk != null) AttentionLayout.ScatterAddTransposed(dKeysT, paddedKeys, dk, b, kvHead, S, Hkv, D);
                if (dv != null) AttentionLayout.ScatterAddTransposed(dValuesT, paddedKeys, dv, b, kvHead, S, Hkv, D);
            });
        });
        return output;
    }

    /// <summary>
    /// The GPU path. Several queries a sequence (training, prefill) with a head of at most 64 take v4
    /// (Compute/Kernels/FlashAttentionKernels.cs): tiles of queries and keys in shared memory, an online
    /// softmax, and only O and the log-sum-exp L (B, Hq, T) kept for the backward, which recomputes P.
    /// Otherwise (decoding, T = 1) v3 (AttentionKernels.cs): one warp per query row computes its
    /// scores, softmax and output and keeps P (B, Hq, T, S) for the backward; the backward is one
    /// warp per query row (dq, and dS) and one thread per key element (dk, dv).
    /// </summary>
    private static Tensor AttentionOnDevice(Tensor q, Tensor k, Tensor v, bool[]? keyMask, int B, int T, int S, int Hq, int Hkv, int D,
        int offset, float scale)
    {
        var device = q.Device;
        var shape = new AttentionShape { B = B, T = T, S = S, Hq = Hq, Hkv = Hkv, D = D, Offset = offset, HasMask = keyMask == null ? 0 : 1, Scale = scale };
        if (T > 1 && FlashAttentionKernels.Supports(shape, q.View, k.View, v.View)) return FlashAttentionOnDevice(q, k, v, keyMask, shape);
        var output = Tensor.Empty(device, [B, T, Hq, D]);
        var probs = new DeviceArray(device, (long)B * Hq * T * S);
        AttentionKernels.Forward(device, q.View, k.View, v.View, device.Indices(keyMask == null ? [1] : Array.ConvertAll(keyMask, m => m ? 1 : 0)),
            output.View, probs.View, shape);
        Autograd.Record(output, [q, k, v], () =>
        {
            using var dScores = device.Pool.Rent<float>(probs.Length);
            // A gradient not wanted goes to a scratch buffer (the kernels write all three).
            using var scratchQ = q.RequiresGrad ? null : device.Zeros<float>(q.Size);
            using var scratchK = k.RequiresGrad ? null : device.Zeros<float>(k.Size);
            using var scratchV = v.RequiresGrad ? null : device.Zeros<float>(v.Size);
            AttentionKernels.Backward(device, q.View, k.View, v.View, output.View, probs.View, output.GradView(), dScores.View,
                scratchQ?.View ?? q.GradView(), scratchK?.View ?? k.GradView(), scratchV?.View ?? v.GradView(), shape);
            probs.Release();
        });
        if (!output.RequiresGrad) probs.Release();
        return output;
    }

    /// <summary>v4 forward and backward; the mask goes up again by content in the backward (Device.Indices keeps a few).</summary>
    private static Tensor FlashAttentionOnDevice(Tensor q, Tensor k, Tensor v, bool[]? keyMask, AttentionShape shape)
    {
        var device = q.Device;
        int[] mask = keyMask == null ? [1] : Array.ConvertAll(keyMask, m => m ? 1 : 0);
        var output = Tensor.Empty(device, [shape.B, shape.T, shape.Hq, shape.D]);
        var logSumExp = new DeviceArray(device, (long)shape.B * shape.Hq * shape.T);   // (B, Hq, T)
        FlashAttentionKernels.Forward(device, q.View, k.View, v.View, device.Indices(mask), output.View, logSumExp.View, shape);
        Autograd.Record(output, [q, k, v], () =>
        {
            using var delta = device.Pool.Rent<float>(logSumExp.Length);
            // A gradient not wanted goes to a scratch buffer (the kernels write all three).
            using var scratchQ = q.RequiresGrad ? null : device.Zeros<float>(q.Size);
            using var scratchK = k.RequiresGrad ? null : device.Zeros<float>(k.Size);
            using var scratchV = v.RequiresGrad ? null : device.Zeros<float>(v.Size);
            FlashAttentionKernels.Backward(device, q.View, k.View, v.View, device.Indices(mask), output.View, logSumExp.View, output.GradView(),
                delta.View, scratchQ?.View ?? q.GradView(), scratchK?.View ?? k.GradView(), scratchV?.View ?? v.GradView(), shape);
            logSumExp.Release();
        });
        if (!output.RequiresGrad) logSumExp.Release();
        return output;
    }
}

/// <summary>The layout helpers of Attention (file-local, so their names stay out of Op).</summary>
file static class AttentionLayout
{
    /// <summary>0 for an allowed key, -infinity for a masked one; null when every key is allowed.</summary>
    public static float[]? MaskBias(bool[]? keyMask, int length)
    {
        if (keyMask == null) return null;
        var bias = new float[length];
        for (int i = 0; i < length; i++) bias[i] = keyMask[i] ? 0f : float.NegativeInfinity;
        return bias;
    }

    /// <summary>The first `allowed` columns rounded up to whole 16-wide vectors (at most the padded row).</summary>
    public static int PaddedWidth(int allowed, int paddedKeys) => Math.Min((allowed + 15) & ~15, paddedKeys);

    /// <summary>y_j (+)= sum_r x_r m[r * stride + j] for j < y.Length: a row vector times a matrix whose
    /// rows lie stride apart. Sixteen columns of y at a time stay in a register while r runs.</summary>
    public static void VectorTimesMatrix(ReadOnlySpan<float> x, ReadOnlySpan<float> m, int stride, Span<float> y, bool accumulate)
    {
        int rows = x.Length, columns = y.Length;
        if (!accumulate) y.Clear();
        if (rows == 0) return;
        if ((long)(rows - 1) * stride + columns > m.Length) throw new ArgumentException("VectorTimesMatrix: matrix too short");
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            ref float x0 = ref MemoryMarshal.GetReference(x);
            ref float m0 = ref MemoryMarshal.GetReference(m);
            ref float y0 = ref MemoryMarshal.GetReference(y);
            for (; j + 32 <= columns; j += 32)   // two independent sums, so the adds overlap
            {
                var sum0 = Vector512.LoadUnsafe(ref y0, (nuint)j);
                var sum1 = Vector512.LoadUnsafe(ref y0, (nuint)(j + 16));
                for (int r = 0; r < rows; r++)
                {
                    var xr = Vector512.Create(Unsafe.Add(ref x0, r));
                    sum0 = Vector512.FusedMultiplyAdd(xr, Vector512.LoadUnsafe(ref m0, (nuint)((long)r * stride + j)), sum0);
                    sum1 = Vector512.FusedMultiplyAdd(xr, Vector512.LoadUnsafe(ref m0, (nuint)((long)r * stride + j + 16)), sum1);
                }
                sum0.StoreUnsafe(ref y0, (nuint)j);
                sum1.StoreUnsafe(ref y0, (nuint)(j + 16));
            }
            for (; j + 16 <= columns; j += 16)   // even and odd rows in two sums, for the same reason
            {
                var even = Vector512.LoadUnsafe(ref y0, (nuint)j);
                var odd = Vector512<float>.Zero;
                int r = 0;
                for (; r + 2 <= rows; r += 2)
                {
                    even = Vector512.FusedMultiplyAdd(Vector512.Create(Unsafe.Add(ref x0, r)), Vector512.LoadUnsafe(ref m0, (nuint)((long)r * stride + j)), even);
                    odd = Vector512.FusedMultiplyAdd(Vector512.Create(Unsafe.Add(ref x0, r + 1)), Vector512.LoadUnsafe(ref m0, (nuint)((long)(r + 1) * stride + j)), odd);
                }
                if (r < rows) even = Vector512.FusedMultiplyAdd(Vector512.Create(Unsafe.Add(ref x0, r)), Vector512.LoadUnsafe(ref m0, (nuint)((long)r * stride + j)), even);
                (even + odd).StoreUnsafe(ref y0, (nuint)j);
            }
        }
        if (j == columns) return;
        // The tail of a head (D = 24 is 16 + 8): one TensorPrimitives call per row here cost more in
        // call overhead than all the vector work above, so eight columns go in one Vector256.
        if (Vector256.IsHardwareAccelerated && j + 8 <= columns)
        {
            ref float x0 = ref MemoryMarshal.GetReference(x);
            ref float m0 = ref MemoryMarshal.GetReference(m);
            ref float y0 = ref MemoryMarshal.GetReference(y);
            for (; j + 8 <= columns; j += 8)
            {
                var sum = Vector256.LoadUnsafe(ref y0, (nuint)j);
                for (int r = 0; r < rows; r++)
                    sum = Vector256.FusedMultiplyAdd(Vector256.Create(Unsafe.Add(ref x0, r)), Vector256.LoadUnsafe(ref m0, (nuint)((long)r * stride + j)), sum);
                sum.StoreUnsafe(ref y0, (nuint)j);
            }
        }
        for (; j < columns; j++)
        {
            float sum = y[j];
            for (int r = 0; r < rows; r++) sum += x[r] * m[r * stride + j];
            y[j] = sum;
        }
    }

    /// <summary>y_r = sum_d x_d m[r * stride + d] for r &lt; y.Length: every row of a matrix whose rows lie
    /// stride apart, dotted with x. Decoding scores its keys this way, K read in place; a
    /// TensorPrimitives.Dot per key spent more in call overhead than in arithmetic at D = 24 or 32.</summary>
    public static void MatrixTimesVector(ReadOnlySpan<float> m, int stride, ReadOnlySpan<float> x, Span<float> y)
    {
        int width = x.Length;
        if (y.Length == 0) return;
        if ((long)(y.Length - 1) * stride + width > m.Length) throw new ArgumentException("MatrixTimesVector: matrix too short");
        ref float x0 = ref MemoryMarshal.GetReference(x);
        ref float m0 = ref MemoryMarshal.GetReference(m);
        int vectorWidth = Vector512.IsHardwareAccelerated ? width & ~15 : 0;
        int halfVectorWidth = Vector256.IsHardwareAccelerated ? width & ~7 : 0;
        for (int r = 0; r < y.Length; r++)
        {
            ref float row = ref Unsafe.Add(ref m0, (nint)((long)r * stride));
            var sum512 = Vector512<float>.Zero;
            int d = 0;
            for (; d < vectorWidth; d += 16)
                sum512 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref x0, (nuint)d), Vector512.LoadUnsafe(ref row, (nuint)d), sum512);
            var sum256 = Vector256<float>.Zero;
            for (; d < halfVectorWidth; d += 8)
                sum256 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref x0, (nuint)d), Vector256.LoadUnsafe(ref row, (nuint)d), sum256);
            // One horizontal sum a key: the 8-wide part joins the 16-wide one first.
            float sum = Vector512.Sum(sum512 + Vector512.Create(sum256, Vector256<float>.Zero));
            for (; d < width; d++) sum += Unsafe.Add(ref x0, d) * Unsafe.Add(ref row, d);
            y[r] = sum;
        }
    }

    /// <summary>m[r * stride + j] += x_r y_j for every r < x.Length and j < y.Length: a rank-one update,
    /// sixteen columns at a time. (One TensorPrimitives call per row cost more in call overhead than in
    /// arithmetic at attention's short rows, and this update runs for every query of the backward.)</summary>
    public static void AddOuterProduct(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> m, int stride)
    {
        int columns = y.Length;
        if (x.Length == 0 || columns == 0) return;
        if ((long)(x.Length - 1) * stride + columns > m.Length) throw new ArgumentException("AddOuterProduct: matrix too short");
        int vectorColumns = Vector512.IsHardwareAccelerated ? columns & ~15 : 0;
        ref float y0 = ref MemoryMarshal.GetReference(y);
        ref float m0 = ref MemoryMarshal.GetReference(m);
        for (int r = 0; r < x.Length; r++)
        {
            var xr = Vector512.Create(x[r]);
            nuint rowAt = (nuint)((long)r * stride);
            for (int j = 0; j < vectorColumns; j += 16)
            {
                nuint at = rowAt + (nuint)j;
                Vector512.FusedMultiplyAdd(xr, Vector512.LoadUnsafe(ref y0, (nuint)j), Vector512.LoadUnsafe(ref m0, at)).StoreUnsafe(ref m0, at);
            }
            for (int j = vectorColumns; j < columns; j++) m[r * stride + j] += x[r] * y[j];
        }
    }

    /// <summary>Rows s &lt; count of x (B, S, H, D) at batch b, head h, into xT (D, count) with rows stride apart.</summary>
    public static void GatherTransposed(float[] x, Span<float> xT, int stride, int b, int h, int count, int S, int H, int D)
    {
        for (int s = 0; s < count; s++)
        {
            int at = ((b * S + s) * H + h) * D;
            for (int d = 0; d < D; d++) xT[d * stride + s] = x[at + d];
        }
    }

    /// <summary>The inverse of GatherTransposed, adding: grad (B, S, H, D) at b, h += gradT (D, S).</summary>
    public static void ScatterAddTransposed(ReadOnlySpan<float> gradT, int stride, float[] grad, int b, int h, int S, int H, int D)
    {
        for (int s = 0; s < S; s++)
        {
            int at = ((b * S + s) * H + h) * D;
            for (int d = 0; d < D; d++) grad[at + d] += gradT[d * stride + s];
        }
    }

}
