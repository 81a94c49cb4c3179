// Attention v4: a tiled, FlashAttention-2 style forward (Dao 2023, Algorithm 1) in fp32, and the
// launchers of it and of its backward (FlashAttentionBackward.cs). The equations are Ops/Attention.cs's:
// causal, grouped-query (query head h reads kv head h / (Hq / Hkv)), key mask, query t at key position
// offset + t. q (B, T, Hq, D), k and v (B, S, Hkv, D), o (B, T, Hq, D), L (B, Hq, T).
// One group of Threads = 128 per (b, h, tile of Rows = 32 query rows); it walks tiles of Keys = 32 keys:
//   Q tile (pre-scaled by 1/sqrt(D)), K tile, V tile in shared memory, loaded as Float4 (ld.global.v4,
//   consecutive threads along a row);
//   S = Q K^T for the tile, a register-tiled product: thread (ty, tx) = (thread / 16, thread % 16) holds
//   rows ty + 8 i (i < 4) and keys tx + 16 j (j < 2); K's tile rows lie 68 floats apart so the 16
//   threads of a row read 16 rows of K without bank conflicts;
//   a key not allowed (s > offset + t, masked, or past S) scores -inf; online softmax per row:
//     m' = max(m, max_s S),  P = exp(S - m'),  l' = l e^(m - m') + sum_s P,  O' = O e^(m - m') + P V
//   (the 16 threads of a row are one half-warp: the row max is four xor-shuffles; each keeps its own part
//   of l, summed once at the end); P goes through shared memory to O += P V, where the thread holds
//   rows ty + 8 i and d = 4 tx .. 4 tx + 3 (D <= 64), so V is read as Float4, conflict-free;
//   key tiles after the query tile's last causal key are never visited.
//   End: o = O / l and L = m + log l; a row with no allowed key writes o = 0 and L = +inf, so the
//   backward's P = exp(S - L) is 0 there and it passes zero gradient.
// Shared memory 28.5 KB a group (static, under the 48 KB default): Q 8 KB, K 8.5, V 8, P 4.
// Versions (v1-v3 in AttentionKernels.cs and AttentionDecodeKernel.cs keep P (B, Hq, T, S) instead):
//   v4 (this file): training and prefill (T > 1, D <= 64, D a multiple of 4); Ops/Attention.cs keeps O
//      and L (not P) for the backward. Decoding (T = 1) stays on v3, whose lanes-over-keys suits a single row.
//      Measured on the H200 (`grpo bench --device cuda --figures attention`, one run): train shape (B 64,
//      T = S = 128, H 4, D 64) forward 68 us, backward 207 us (v3: 642 and 1240); long shape (B 8, T = S =
//      512, H 12) forward 278 us (11.6 TFLOP/s), backward 756 us (10.7) against v3's 3609 and 6611. Before
//      it, at the mid shape (B 64, T = S = 512, H 12, D 64) v3 took 27.7 + 27.4 + 24.3 ms a layer.
//   Next: double-buffered K/V tiles (cp.async), larger tiles through dynamic shared memory, D up to 128.
// Tests: Grpo.Tests/Compute/FlashAttentionKernelTests.cs (against Ops/Attention.cs on the CPU
// accelerator), PtxCompileTests.cs; on a GPU `grpo check --device cuda` (attention cases).
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using Float4 = Grpo.Compute.Kernels.MatMulKernels.Float4;

namespace Grpo.Compute.Kernels;

public static partial class FlashAttentionKernels
{
    /// <summary>Query rows a group takes (Br), keys a step (Bc), threads a group, the largest head.</summary>
    public const int Rows = 32, Keys = 32, Threads = 128, MaxHeadDim = 64;
    private const int RowFloat4s = MaxHeadDim / 4;    // a tile row read along by one thread per Float4 (no conflicts)
    private const int PaddedFloat4s = RowFloat4s + 1; // a tile row read across rows: 68 floats apart

    /// <summary>
    /// Whether v4 takes this call: a head of at most MaxHeadDim, a multiple of 4 (rows read as Float4), and
    /// views starting on 16 bytes (Cast&lt;Float4&gt; would otherwise round the offset down).
    /// </summary>
    public static bool Supports(AttentionShape a, params ArrayView<float>[] views)
    {
        if (a.D > MaxHeadDim || a.D % 4 != 0 || a.D <= 0) return false;
        foreach (var view in views)
            if (((IContiguousArrayView)view).IndexInBytes % 16 != 0) return false;
        return true;
    }

    /// <summary>output (B, T, Hq, D) and logSumExp (B, Hq, T) from q, k, v; keyMask (B*S) of 0/1, read only when a.HasMask.</summary>
    public static void Forward(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> logSumExp, AttentionShape a)
    {
        Check(a, q, k, v, output, logSumExp, keyMask, q, k, v, output);
        if (q.Length == 0) return;
        device.Kernels.Get("flash_attention_forward", acc => WarpKernel(acc, acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, AttentionShape>(FlashAttentionForwardKernel)))
            (Groups((a.T + Rows - 1) / Rows * a.B * a.Hq), q, k, v, keyMask, output, logSumExp, a);
    }

    /// <summary>
    /// dq, dk, dv += the gradients, from the forward's output and logSumExp; delta (B, Hq, T) is scratch the caller provides.
    /// </summary>
    public static void Backward(Device device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> logSumExp, ArrayView<float> dOutput, ArrayView<float> delta,
        ArrayView<float> dq, ArrayView<float> dk, ArrayView<float> dv, AttentionShape a)
    {
        Check(a, q, k, v, output, logSumExp, keyMask, dOutput, dk, dv, dq);
        if (delta.Length != logSumExp.Length) throw new ArgumentException($"flash attention backward: delta has {delta.Length} floats, expected {logSumExp.Length}");
        if (q.Length == 0) return;
        int rows = a.B * a.T * a.Hq, warpSize = device.Accelerator.WarpSize;
        device.Kernels.Get("flash_attention_delta", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(FlashAttentionDeltaWarpKernel))
            (new KernelConfig((rows + DeltaWarps - 1) / DeltaWarps, DeltaWarps * warpSize), dOutput, output, delta, a);
        device.Kernels.Get("flash_attention_query_backward", acc => WarpKernel(acc, acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(FlashAttentionQueryBackwardKernel)))
            (Groups((a.T + Rows - 1) / Rows * a.B * a.Hq), q, k, v, keyMask, dOutput, logSumExp, delta, dq, a);
        if (k.Length == 0) return;
        device.Kernels.Get("flash_attention_key_value_backward", acc => WarpKernel(acc, acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(FlashAttentionKeyValueBackwardKernel)))
            (Groups((a.S + Keys - 1) / Keys * a.B * a.Hkv), q, k, v, keyMask, dOutput, logSumExp, delta, dk, dv, a);
    }

    private static KernelConfig Groups(int groups) => new(new Index1D(groups), new Index1D(Threads));

    /// <summary>The kernel, once the accelerator is known to have the 32-lane warp the half-warp shuffles assume.</summary>
    private static TKernel WarpKernel<TKernel>(Accelerator accelerator, TKernel kernel) =>
        accelerator.WarpSize == 32 ? kernel
            : throw new NotSupportedException($"attention v4 needs a warp of 32 lanes; {accelerator.Name} has {accelerator.WarpSize}");

    private static void Check(AttentionShape a, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> logSumExp, ArrayView<int> keyMask, ArrayView<float> qSized, ArrayView<float> kSized, ArrayView<float> vSized, ArrayView<float> oSized)
    {
        long qSize = (long)a.B * a.T * a.Hq * a.D, kvSize = (long)a.B * a.S * a.Hkv * a.D;
        if (q.Length != qSize || output.Length != qSize || qSized.Length != qSize || oSized.Length != qSize || k.Length != kvSize || v.Length != kvSize
            || kSized.Length != kvSize || vSized.Length != kvSize || logSumExp.Length != (long)a.B * a.Hq * a.T)
            throw new ArgumentException($"flash attention: q {q.Length}, k {k.Length}, v {v.Length}, o {output.Length}, L {logSumExp.Length} (or a gradient) do not fit B={a.B} T={a.T} S={a.S} Hq={a.Hq} Hkv={a.Hkv} D={a.D}");
        if (a.HasMask != 0 && keyMask.Length != (long)a.B * a.S) throw new ArgumentException($"flash attention: keyMask has {keyMask.Length} entries, expected B * S = {a.B * a.S}");
        if (!Supports(a, q, k, v, output, qSized, kSized, vSized, oSized))
            throw new ArgumentException($"flash attention takes D <= {MaxHeadDim}, a multiple of 4, and views on 16 bytes; D = {a.D}");
        if (qSize > int.MaxValue || kvSize > int.MaxValue) throw new ArgumentException("flash attention: a tensor past 2^31 floats");
    }

    /// <summary>Host round trip (tests, `grpo check`): o, L, and dq, dk, dv (from zero) for dOutput.</summary>
    public static class Host
    {
        public static (float[] Output, float[] LogSumExp, float[] Dq, float[] Dk, float[] Dv) Run(Device device, float[] q, float[] k, float[] v,
            bool[]? keyMask, AttentionShape a, float[] dOutput)
        {
            int[] mask = keyMask == null ? [1] : Array.ConvertAll(keyMask, m => m ? 1 : 0);
            using var deviceQ = device.UploadToPool<float>(q);
            using var deviceK = device.UploadToPool<float>(k);
            using var deviceV = device.UploadToPool<float>(v);
            using var deviceMask = device.UploadToPool<int>(mask);
            using var output = device.Zeros<float>(q.Length);
            using var logSumExp = device.Zeros<float>((long)a.B * a.Hq * a.T);
            using var delta = device.Zeros<float>((long)a.B * a.Hq * a.T);
            using var deviceDOutput = device.UploadToPool<float>(dOutput);
            using var dq = device.Zeros<float>(q.Length);
            using var dk = device.Zeros<float>(k.Length);
            using var dv = device.Zeros<float>(v.Length);
            Forward(device, deviceQ.View, deviceK.View, deviceV.View, deviceMask.View, output.View, logSumExp.View, a);
            Backward(device, deviceQ.View, deviceK.View, deviceV.View, deviceMask.View, output.View, logSumExp.View, deviceDOutput.View,
                delta.View, dq.View, dk.View, dv.View, a);
            return (Device.DownloadArray<float>(output.View), Device.DownloadArray<float>(logSumExp.View), Device.DownloadArray<float>(dq.View),
                Device.DownloadArray<float>(dk.View), Device.DownloadArray<float>(dv.View));
        }
    }

    /// <summary>v4 forward. Grid: query tiles x (B * Hq) groups of Threads.</summary>
    public static void FlashAttentionForwardKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyMask,
        ArrayView<float> output, ArrayView<float> logSumExp, AttentionShape a)
    {
        var queries = SharedMemory.Allocate<Float4>(Rows * RowFloat4s);   // [r][d4], scaled by 1/sqrt(D)
        var keys = SharedMemory.Allocate<Float4>(Keys * PaddedFloat4s);   // [c][d4], 68 floats a row
        var values = SharedMemory.Allocate<Float4>(Keys * RowFloat4s);   // [c][d4]
        var probs = SharedMemory.Allocate<Float4>(Rows * Keys / 4);       // [r][c / 4]
        var probFloats = probs.Cast<float>();
        int thread = Group.IdxX, ty = thread / 16, tx = thread % 16;
        int queryTiles = (a.T + Rows - 1) / Rows;
        int pair = Grid.IdxX / queryTiles, b = pair / a.Hq, h = pair % a.Hq, kvHead = h / a.Group;
        int t0 = (queryTiles - 1 - Grid.IdxX % queryTiles) * Rows;   // the longest (last) tiles start first
        int d4s = a.D / 4;

        LoadRows(queries, q, a, b, t0, a.T, a.Hq, h, RowFloat4s, a.Scale, thread);
        int lastQuery = XMath.Min(t0 + Rows, a.T) - 1;
        int keyEnd = XMath.Min(a.S, a.Offset + lastQuery + 1);   // keys past this are after every row's diagonal

        var row0 = FlashRow.Start(); var row1 = FlashRow.Start(); var row2 = FlashRow.Start(); var row3 = FlashRow.Start();
        for (int s0 = 0; s0 < keyEnd; s0 += Keys)
        {
            LoadRows(keys, k, a, b, s0, a.S, a.Hkv, kvHead, PaddedFloat4s, 1f, thread);
            LoadRows(values, v, a, b, s0, a.S, a.Hkv, kvHead, RowFloat4s, 1f, thread);
            Group.Barrier();
            var scores = Scores.Of(queries, keys, ty, tx, d4s);
            int key0 = s0 + tx, key1 = s0 + tx + 16;
            bool open0 = KeyOpen(a, keyMask, b, key0), open1 = KeyOpen(a, keyMask, b, key1);
            row0 = row0.Add(scores.S00, scores.S01, a, t0 + ty, key0, key1, open0, open1, probFloats, ty, tx);
            row1 = row1.Add(scores.S10, scores.S11, a, t0 + ty + 8, key0, key1, open0, open1, probFloats, ty + 8, tx);
            row2 = row2.Add(scores.S20, scores.S21, a, t0 + ty + 16, key0, key1, open0, open1, probFloats, ty + 16, tx);
            row3 = row3.Add(scores.S30, scores.S31, a, t0 + ty + 24, key0, key1, open0, open1, probFloats, ty + 24, tx);
            Group.Barrier();
            int keyQuads = (XMath.Min(Keys, a.S - s0) + 3) / 4;   // a bound known at run time: the loop stays rolled
            for (int c4 = 0; c4 < keyQuads; c4++)
            {
                var v0 = values[(4 * c4) * RowFloat4s + tx];
                var v1 = values[(4 * c4 + 1) * RowFloat4s + tx];
                var v2 = values[(4 * c4 + 2) * RowFloat4s + tx];
                var v3 = values[(4 * c4 + 3) * RowFloat4s + tx];
                row0.Acc = WeightedSum(row0.Acc, probs[ty * (Keys / 4) + c4], v0, v1, v2, v3);
                row1.Acc = WeightedSum(row1.Acc, probs[(ty + 8) * (Keys / 4) + c4], v0, v1, v2, v3);
                row2.Acc = WeightedSum(row2.Acc, probs[(ty + 16) * (Keys / 4) + c4], v0, v1, v2, v3);
                row3.Acc = WeightedSum(row3.Acc, probs[(ty + 24) * (Keys / 4) + c4], v0, v1, v2, v3);
            }
            Group.Barrier();
        }
        row0.Finish(output, logSumExp, a, b, h, t0 + ty, tx);
        row1.Finish(output, logSumExp, a, b, h, t0 + ty + 8, tx);
        row2.Finish(output, logSumExp, a, b, h, t0 + ty + 16, tx);
        row3.Finish(output, logSumExp, a, b, h, t0 + ty + 24, tx);
    }

    /// <summary>One query row's online-softmax state in one thread: running max, this thread's part of the sum, O's four d.</summary>
    private struct FlashRow
    {
        public float Max, Sum;
        public Float4 Acc;

        public static FlashRow Start() => new() { Max = float.NegativeInfinity };

        /// <summary>Takes the row's scores for keys key0, key1 (this thread's two), writes P to shared memory, rescales.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly FlashRow Add(float score0, float score1, AttentionShape a, int t, int key0, int key1, bool open0, bool open1,
            ArrayView<float> probs, int r, int tx)
        {
            if (!Allowed(a, t, key0, open0)) score0 = float.NegativeInfinity;
            if (!Allowed(a, t, key1, open1)) score1 = float.NegativeInfinity;
            float newMax = XMath.Max(Max, HalfWarpMax(XMath.Max(score0, score1)));
            float p0 = 0f, p1 = 0f, rescale = 1f;
            if (newMax != float.NegativeInfinity)   // the same in the row's 16 threads
            {
                rescale = XMath.Exp(Max - newMax);   // 0 the first time (Max = -inf)
                p0 = XMath.Exp(score0 - newMax);     // a key not allowed: e^-inf = 0
                p1 = XMath.Exp(score1 - newMax);
            }
            probs[r * Keys + tx] = p0;
            probs[r * Keys + tx + 16] = p1;
            return new FlashRow { Max = newMax, Sum = Sum * rescale + p0 + p1, Acc = Scale(Acc, rescale) };
        }

        /// <summary>o = O / l and L = m + log l for row t (if t &lt; T); no allowed key: o = 0, L = +inf.</summary>
        public readonly void Finish(ArrayView<float> output, ArrayView<float> logSumExp, AttentionShape a, int b, int h, int t, int tx)
        {
            float sum = HalfWarpSum(Sum);
            if (t >= a.T) return;
            bool none = Max == float.NegativeInfinity;
            float inverse = none ? 0f : 1f / sum;
            if (4 * tx < a.D) output.Cast<Float4>()[QueryRowAt(a, b, t, h) / 4 + tx] = Scale(Acc, inverse);
            if (tx == 0) logSumExp[((long)b * a.Hq + h) * a.T + t] = none ? float.PositiveInfinity : Max + XMath.Log(sum);
        }
    }

    /// <summary>The 4 x 2 scores of a thread: rows ty + 8 i, keys tx + 16 j, S_ij = Q_i . K_j over d.</summary>
    private struct Scores
    {
        public float S00, S01, S10, S11, S20, S21, S30, S31;

        /// <summary>Rows of a (Rows x RowFloat4s) tile times rows of a (Keys x PaddedFloat4s) tile.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Scores Of(ArrayView<Float4> rows, ArrayView<Float4> keys, int ty, int tx, int d4s)
        {
            var s = default(Scores);
            for (int d4 = 0; d4 < d4s; d4++)
            {
                var k0 = keys[tx * PaddedFloat4s + d4];
                var k1 = keys[(tx + 16) * PaddedFloat4s + d4];
                var q0 = rows[ty * RowFloat4s + d4];
                var q1 = rows[(ty + 8) * RowFloat4s + d4];
                var q2 = rows[(ty + 16) * RowFloat4s + d4];
                var q3 = rows[(ty + 24) * RowFloat4s + d4];
                s.S00 += Dot(q0, k0); s.S01 += Dot(q0, k1);
                s.S10 += Dot(q1, k0); s.S11 += Dot(q1, k1);
                s.S20 += Dot(q2, k0); s.S21 += Dot(q2, k1);
                s.S30 += Dot(q3, k0); s.S31 += Dot(q3, k1);
            }
            return s;
        }
    }

    /// <summary>
    /// Rows first .. first + tile of x (B, rows, heads, D) at head `head`, times scale, into a shared tile
    /// of `stride` Float4s a row; zeros past `rows` and past D. Float4 loads along each row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadRows(ArrayView<Float4> tile, ArrayView<float> x, AttentionShape a, int b, int first, int rows, int heads, int head,
        int stride, float scale, int thread)
    {
        var x4 = x.Cast<Float4>();
        int d4s = a.D / 4;
        for (int e = thread; e < Rows * RowFloat4s; e += Threads)   // Rows == Keys: one loop serves both tiles
        {
            int r = e / RowFloat4s, d4 = e % RowFloat4s, row = first + r;
            var value = default(Float4);
            if (row < rows && d4 < d4s) value = Scale(x4[(((long)b * rows + row) * heads + head) * d4s + d4], scale);
            tile[r * stride + d4] = value;
        }
    }

    /// <summary>Key s exists and is not padding (the causal test is Allowed's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool KeyOpen(AttentionShape a, ArrayView<int> keyMask, int b, int s) =>
        s < a.S && (a.HasMask == 0 || keyMask[(long)b * a.S + s] != 0);

    /// <summary>Query t may attend key s: t a real row, s open, and s at or before t's position.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Allowed(AttentionShape a, int t, int s, bool open) => open && t < a.T && s <= a.Offset + t;

    private static long QueryRowAt(AttentionShape a, int b, int t, int h) => (((long)b * a.T + t) * a.Hq + h) * a.D;

    private static float Dot(Float4 x, Float4 y) => x.X * y.X + x.Y * y.Y + x.Z * y.Z + x.W * y.W;

    private static Float4 Scale(Float4 x, float s) => new() { X = x.X * s, Y = x.Y * s, Z = x.Z * s, W = x.W * s };

    private static Float4 Add(Float4 x, Float4 y) => new() { X = x.X + y.X, Y = x.Y + y.Y, Z = x.Z + y.Z, W = x.W + y.W };

    /// <summary>acc + w.X r0 + w.Y r1 + w.Z r2 + w.W r3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float4 WeightedSum(Float4 acc, Float4 w, Float4 r0, Float4 r1, Float4 r2, Float4 r3) => new()
    {
        X = acc.X + w.X * r0.X + w.Y * r1.X + w.Z * r2.X + w.W * r3.X,
        Y = acc.Y + w.X * r0.Y + w.Y * r1.Y + w.Z * r2.Y + w.W * r3.Y,
        Z = acc.Z + w.X * r0.Z + w.Y * r1.Z + w.Z * r2.Z + w.W * r3.Z,
        W = acc.W + w.X * r0.W + w.Y * r1.W + w.Z * r2.W + w.W * r3.W,
    };

    /// <summary>The max over the 16 lanes of this half-warp (one query row), in each of them.</summary>
    private static float HalfWarpMax(float value)
    {
        for (int laneMask = 8; laneMask > 0; laneMask /= 2) value = XMath.Max(value, Warp.ShuffleXor(value, laneMask));
        return value;
    }

    /// <summary>The sum over the 16 lanes of this half-warp, in each of them.</summary>
    private static float HalfWarpSum(float value)
    {
        for (int laneMask = 8; laneMask > 0; laneMask /= 2) value += Warp.ShuffleXor(value, laneMask);
        return value;
    }
}
