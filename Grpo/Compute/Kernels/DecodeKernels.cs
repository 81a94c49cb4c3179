// Fused decode step: one kernel per layer, one group per sequence row (T == 1, a step with a KV cache).
// It is the same computation as Transformer.Run's lines for one layer, run for one token of one row:
//   var n = Op.RmsNorm(x, layer.InputNorm, config.NormEps);                   (B, T, C)
//   var q = Linear(n, layer.Q, layer.QBias) ...  k = Linear(n, layer.K, ...)  v = Linear(n, layer.V, ...)
//   q = Op.Rope(q, positions, config.RopeTheta);  k = Op.Rope(k, positions, config.RopeTheta);
//   var (keys, values) = cache.Append(layer, k, v);                           (B, capacity, Hkv, D)
//   var attended = Op.Attention(q, keys, values, cache.KeyMask, queryOffset: start)
//   x = Op.Add(x, Linear(attended, layer.O));
//   n = Op.RmsNorm(x, layer.PostNorm, config.NormEps);
//   var hidden = Op.SwiGlu(Linear(n, layer.Gate), Linear(n, layer.Up));      (B, T, F)
//   x = Op.Add(x, Linear(hidden, layer.Down));
// and the head kernel is `x = Op.RmsNorm(x, finalNorm, eps); return Linear(x, lmHead);`. Layer 0 also does
// `Op.Embedding(embedTokens, tokens)` (it reads its x row from the table at the row's token).
// Why: the op-by-op decode step of the small model is ~75 launches of 4-5 us host time each for
// ~0.1 ms of arithmetic; a row's work in a layer depends on no other row, so a group per row does it all.
// Layout: the group's warps (Group.DimX / 32, 8 on CUDA) share the row's vectors in dynamic shared memory:
//   partial sums (32) | x (C) | n (C) | q (C) | k (Hkv D) | v (Hkv D) | attended (C) | hidden (F) | scores (warps x capacity)
// Linear: warp w computes outputs o = w, w + warps, ...; its lanes stride the weight row (W is (out, in),
//   rows contiguous) four floats at a time (ld.global.v4) against n in shared memory, then a warp sum.
// RoPE: the pairs (i, i + D/2) of every head of q and k, with the Rope op's device table (same numbers).
// Attention: a warp per query head h (kv head h / (Hq / Hkv)); lanes take keys s = lane, lane + 32, ...
//   <= Length, whole dots, masked key -inf, scores kept in the warp's shared row; max and sum by warp
//   shuffles; then o[d] = sum_s p_s v_s[d] with lanes over d. No allowed key: o = 0 (as Ops/Attention.cs).
// The new k, v are written to the cache at position Length and read back from there (a barrier orders
// global memory within a group).
// Versions: v1 (this): as above, one output per warp at a time. Measured: (to be filled).
// Tests: Grpo.Tests/Compute/FusedDecodeTests.cs (against the op-by-op path and the CPU), PtxCompileTests.cs;
// `grpo check --device cuda` (greedy sampling and the decode step line).
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using Float4 = Grpo.Compute.Kernels.MatMulKernels.Float4;

namespace Grpo.Compute.Kernels;

/// <summary>What one layer's fused decode kernel reads and writes (views of the model's and the cache's buffers).</summary>
public struct DecodeLayerArgs
{
    public ArrayView<float> X, Embed;                   // x (B, C) the residual stream; embed (V, C), read when FromTokens != 0
    public ArrayView<int> Tokens, Positions, KeyMask;   // (B), (B), (B * capacity) 0/1
    public ArrayView<float> InputNorm, Q, QBias, K, KBias, V, VBias, O, PostNorm, Gate, Up, Down;
    public ArrayView<float> CacheK, CacheV, Cos, Sin;   // cache (B, capacity, Hkv, D); table [p * D/2 + i]
    public int C, Hq, Hkv, D, F, Capacity, Length, FromTokens, HasBias;
    public float Eps, Scale;
}

/// <summary>The final norm and lm_head, fused: logits (B, V) = RmsNorm(x) W^T.</summary>
public struct DecodeHeadArgs
{
    public ArrayView<float> X, Norm, Head, Logits;
    public int C, Vocab;
    public float Eps;
}

public static class DecodeKernels
{
    private const int Lanes = 32, Partials = 32;

    /// <summary>Floats of dynamic shared memory the layer kernel needs with this many warps a group.</summary>
    public static int LayerSharedFloats(int C, int kvDim, int F, int capacity, int warps) =>
        Partials + 4 * C + 2 * kvDim + F + warps * capacity;

    /// <summary>Floats of dynamic shared memory the head kernel needs.</summary>
    public static int HeadSharedFloats(int C) => Partials + C;

    /// <summary>v1: one layer of one decode step for row Grid.IdxX (see the header).</summary>
    public static void DecodeLayerKernel(DecodeLayerArgs a)
    {
        var shared = SharedMemory.GetDynamic<float>();
        int C = a.C, kvDim = a.Hkv * a.D, warps = Group.DimX / Lanes, warp = Group.IdxX / Lanes, lane = Group.IdxX % Lanes;
        int row = Grid.IdxX;
        var partials = shared.SubView(0, Partials);
        var x = shared.SubView(Partials, C);
        var n = shared.SubView(Partials + C, C);
        var q = shared.SubView(Partials + 2 * C, C);
        var k = shared.SubView(Partials + 3 * C, kvDim);
        var v = shared.SubView(Partials + 3 * C + kvDim, kvDim);
        var attended = shared.SubView(Partials + 3 * C + 2 * kvDim, C);
        var hidden = shared.SubView(Partials + 4 * C + 2 * kvDim, a.F);
        var scores = shared.SubView(Partials + 4 * C + 2 * kvDim + a.F, warps * a.Capacity);

        long xAt = (long)row * C, embedAt = a.FromTokens != 0 ? (long)a.Tokens[row] * C : 0;
        for (int j = Group.IdxX; j < C; j += Group.DimX) x[j] = a.FromTokens != 0 ? a.Embed[embedAt + j] : a.X[xAt + j];
        Group.Barrier();

        Norm(x, a.InputNorm, n, partials, C, a.Eps);
        Linear(n, a.Q, a.QBias, a.HasBias, q, C, C, warp, warps, lane, add: false);
        Linear(n, a.K, a.KBias, a.HasBias, k, kvDim, C, warp, warps, lane, add: false);
        Linear(n, a.V, a.VBias, a.HasBias, v, kvDim, C, warp, warps, lane, add: false);
        Group.Barrier();

        // RoPE on q and k, then k and v into the cache at position Length.
        int half = a.D / 2, qPairs = a.Hq * half;
        long tableAt = (long)a.Positions[row] * half;
        for (int i = Group.IdxX; i < qPairs + a.Hkv * half; i += Group.DimX)
        {
            var target = i < qPairs ? q : k;
            int pair = i < qPairs ? i : i - qPairs, start = pair / half * a.D, kk = pair % half;
            float c = a.Cos[tableAt + kk], s = a.Sin[tableAt + kk];
            float first = target[start + kk], second = target[start + kk + half];
            target[start + kk] = first * c - second * s;
            target[start + kk + half] = second * c + first * s;
        }
        Group.Barrier();
        long cacheRow = ((long)row * a.Capacity + a.Length) * kvDim;
        for (int j = Group.IdxX; j < kvDim; j += Group.DimX)
        {
            a.CacheK[cacheRow + j] = k[j];
            a.CacheV[cacheRow + j] = v[j];
        }
        Group.Barrier();

        Attend(a, q, attended, scores.SubView(warp * a.Capacity, a.Capacity), row, warp, warps, lane);
        Group.Barrier();
        Linear(attended, a.O, a.O, 0, x, C, C, warp, warps, lane, add: true);
        Group.Barrier();

        Norm(x, a.PostNorm, n, partials, C, a.Eps);
        for (int o = warp; o < a.F; o += warps)
        {
            float gate = WarpSum(RowDot(n, a.Gate, (long)o * C, C, lane));
            float up = WarpSum(RowDot(n, a.Up, (long)o * C, C, lane));
            if (lane == 0) hidden[o] = gate * (1f / (1f + XMath.Exp(-gate))) * up;
        }
        Group.Barrier();
        Linear(hidden, a.Down, a.Down, 0, x, C, a.F, warp, warps, lane, add: true);
        Group.Barrier();
        for (int j = Group.IdxX; j < C; j += Group.DimX) a.X[xAt + j] = x[j];
    }

    /// <summary>v1: logits of row Grid.IdxX = RmsNorm(x) lmHead^T, a warp per output as in the layer kernel.</summary>
    public static void DecodeHeadKernel(DecodeHeadArgs a)
    {
        var shared = SharedMemory.GetDynamic<float>();
        int C = a.C, warps = Group.DimX / Lanes, warp = Group.IdxX / Lanes, lane = Group.IdxX % Lanes;
        var partials = shared.SubView(0, Partials);
        var x = shared.SubView(Partials, C);
        long xAt = (long)Grid.IdxX * C;
        for (int j = Group.IdxX; j < C; j += Group.DimX) x[j] = a.X[xAt + j];
        Group.Barrier();
        Norm(x, a.Norm, x, partials, C, a.Eps);
        for (int o = warp; o < a.Vocab; o += warps)
        {
            float logit = WarpSum(RowDot(x, a.Head, (long)o * C, C, lane));
            if (lane == 0) a.Logits[(long)Grid.IdxX * a.Vocab + o] = logit;
        }
    }

    /// <summary>y = (x r) w with r = 1 / sqrt(mean x^2 + eps), as RmsNormKernel; y may be x. Ends with a barrier.</summary>
    private static void Norm(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, ArrayView<float> partials, int C, float eps)
    {
        float partial = 0f;
        for (int j = Group.IdxX; j < C; j += Group.DimX) partial += x[j] * x[j];
        float r = 1f / XMath.Sqrt(GroupSum(partials, partial) / C + eps);
        for (int j = Group.IdxX; j < C; j += Group.DimX) y[j] = x[j] * r * weight[j];
        Group.Barrier();
    }

    /// <summary>y[o] (+)= input . W[o] (+ bias[o]) for o &lt; outputs, W (outputs, inputs); warp w takes o = w, w + warps, ...</summary>
    private static void Linear(ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, int hasBias, ArrayView<float> y,
        int outputs, int inputs, int warp, int warps, int lane, bool add)
    {
        for (int o = warp; o < outputs; o += warps)
        {
            float sum = WarpSum(RowDot(input, weight, (long)o * inputs, inputs, lane));
            if (lane != 0) continue;
            if (hasBias != 0) sum += bias[o];
            y[o] = add ? y[o] + sum : sum;
        }
    }

    /// <summary>This lane's share of input . weight[at .. at + inputs): floats 4 lane .. 4 lane + 3, then 128 further, read as Float4 (inputs % 4 == 0).</summary>
    private static float RowDot(ArrayView<float> input, ArrayView<float> weight, long at, int inputs, int lane)
    {
        var weight4 = weight.Cast<Float4>();
        long at4 = at / 4;
        float sum0 = 0f, sum1 = 0f;
        for (int j = 4 * lane; j < inputs; j += 4 * Lanes)
        {
            var w = weight4[at4 + j / 4];
            sum0 += w.X * input[j] + w.Y * input[j + 1];
            sum1 += w.Z * input[j + 2] + w.W * input[j + 3];
        }
        return sum0 + sum1;
    }

    /// <summary>attended (Hq, D) for this row: a warp per query head over the cached keys 0 .. Length (see the header).</summary>
    private static void Attend(DecodeLayerArgs a, ArrayView<float> q, ArrayView<float> attended, ArrayView<float> scores, int row, int warp, int warps, int lane)
    {
        int allowed = a.Length + 1, group = a.Hq / a.Hkv, kvDim = a.Hkv * a.D;
        for (int h = warp; h < a.Hq; h += warps)
        {
            int kvHead = h / group;
            float laneMax = float.NegativeInfinity;
            for (int s = lane; s < allowed; s += Lanes)
            {
                float score = float.NegativeInfinity;
                if (a.KeyMask[row * a.Capacity + s] != 0)
                {
                    long kAt = ((long)row * a.Capacity + s) * kvDim + kvHead * a.D;
                    float dot = 0f;
                    for (int d = 0; d < a.D; d++) dot += q[h * a.D + d] * a.CacheK[kAt + d];
                    score = dot * a.Scale;
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
                float o = 0f;
                long vAt = (long)row * a.Capacity * kvDim + kvHead * a.D + d;
                for (int s = 0; s < allowed; s++) o += scores[s] * a.CacheV[vAt + (long)s * kvDim];
                attended[h * a.D + d] = o * inverse;
            }
            Warp.Barrier();   // the scores row is reused by the warp's next head
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

    /// <summary>The sum over the group of each thread's value, every thread gets it (the warps' sums added in order: deterministic).</summary>
    private static float GroupSum(ArrayView<float> partials, float value)
    {
        float warpTotal = WarpSum(value);
        if (Group.IdxX % Lanes == 0) partials[Group.IdxX / Lanes] = warpTotal;
        Group.Barrier();
        float total = 0f;
        for (int w = 0; w < Group.DimX / Lanes; w++) total += partials[w];
        Group.Barrier();   // nobody overwrites the partials before everyone has read them
        return total;
    }

    /// <summary>Loads the layer kernel (dynamic shared memory: launch with a KernelConfig that requests it).</summary>
    public static Action<KernelConfig, DecodeLayerArgs> LoadLayer(Accelerator accelerator) =>
        accelerator.LoadStreamKernel<DecodeLayerArgs>(DecodeLayerKernel);

    public static Action<KernelConfig, DecodeHeadArgs> LoadHead(Accelerator accelerator) =>
        accelerator.LoadStreamKernel<DecodeHeadArgs>(DecodeHeadKernel);

    /// <summary>Threads a group: 8 warps, or what the accelerator allows (ILGPU's CPU accelerator in tests).</summary>
    public static int GroupThreads(Accelerator accelerator) => Math.Min(256, accelerator.MaxNumThreadsPerGroup) / Lanes * Lanes;

    /// <summary>One layer for rows 0 .. rows - 1.</summary>
    public static void Layer(Device device, DecodeLayerArgs args, int rows)
    {
        int threads = GroupThreads(device.Accelerator);
        int floats = LayerSharedFloats(args.C, args.Hkv * args.D, args.F, args.Capacity, threads / Lanes);
        device.Kernels.Get("decode_layer", LoadLayer)(new KernelConfig(new Index1D(rows), new Index1D(threads), SharedMemoryConfig.RequestDynamic<float>(floats)), args);
    }

    /// <summary>Final norm and lm_head for rows 0 .. rows - 1.</summary>
    public static void Head(Device device, DecodeHeadArgs args, int rows)
    {
        int threads = GroupThreads(device.Accelerator);
        device.Kernels.Get("decode_head", LoadHead)(new KernelConfig(new Index1D(rows), new Index1D(threads), SharedMemoryConfig.RequestDynamic<float>(HeadSharedFloats(args.C))), args);
    }
}
