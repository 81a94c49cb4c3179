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
// Layout: the group's warps (Group.DimX / 32, 16 on CUDA) share the row's vectors in dynamic shared memory:
//   partial sums (32) | x (C) | n (C) | q (C) | k (Hkv D) | v (Hkv D) | attended (C) | hidden (F) | scores (warps x capacity)
//   | the attention parts' sums (warps x (D + 2))
// Linear: warp w computes blocks of eight outputs (w, w + warps, ... in blocks); its lanes stride the eight
//   weight rows (W is (out, in), rows contiguous) four floats at a time (ld.global.v4) against n in shared
//   memory, then eight warp sums. Eight rows' loads in flight a lane: a group's layer is a chain of such
//   blocks (about 44 a warp at the small shape), each about one L2 round trip, so latency is what counts.
// RoPE: the pairs (i, i + D/2) of every head of q and k, with the Rope op's device table (same numbers).
// Attention: the layer's attention over the row's cache, in DecodeAttention.cs (several warps a head).
// The new k, v are written to the cache at position Length and read back from there (a barrier orders
// global memory within a group).
// Needs C, F and D divisible by 4 (Float4 loads); Transformer.UsesFusedDecode checks it.
// Versions: v1: as above, eight loads in flight a lane, 8 warps a group. v2: sixteen loads in flight a
// lane (RowDots reads two 128-float stretches a step) and 16 warps a group. v3 (this): attention with
// several warps a head (AttendInParts; v2's Attend, a warp a head walking the keys one dependent load at
// a time, stays for groups of fewer than 2 Hq warps). Measured on the H200, small shape (`grpo bench
// --figures generate`, 64 x 96 new tokens): v1 62.4k new tokens/s, slower than the op-by-op step's 70.7k
// (a layer took 212 us: each warp waits on about 100 L2 round trips in turn); v2 with 8 warps 78.0k, with
// 16 warps 115.6k to 118.7k (5 launches a step against 75); v3 124.6k to 126.8k. Only 64 of 132 SMs have
// a group (one a row), so the layer stays latency-bound; spreading a row's layer over several SMs needs a
// grid-wide barrier or a launch per phase (DecodeSpreadKernels.cs measured the latter: slower).
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

public static partial class DecodeKernels
{
    private const int Lanes = 32, Partials = 32;

    /// <summary>Floats of dynamic shared memory the layer kernel needs with this many warps a group.</summary>
    public static int LayerSharedFloats(int C, int kvDim, int F, int capacity, int warps, int headDim) =>
        Partials + 4 * C + 2 * kvDim + F + warps * capacity + warps * (headDim + 2);

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
        var warpParts = shared.SubView(Partials + 4 * C + 2 * kvDim + a.F + warps * a.Capacity, warps * (a.D + 2));

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

        if (warps >= 2 * a.Hq) AttendInParts(a, q, attended, scores, warpParts, row, warp, warps, lane);
        else Attend(a, q, attended, scores.SubView(warp * a.Capacity, a.Capacity), row, warp, warps, lane);
        Group.Barrier();
        Linear(attended, a.O, a.O, 0, x, C, C, warp, warps, lane, add: true);
        Group.Barrier();

        Norm(x, a.PostNorm, n, partials, C, a.Eps);
        for (int first = warp * 8; first < a.F; first += warps * 8)
        {
            var gates = RowDots(n, a.Gate, first, a.F - 1, C, lane).WarpSums();
            var ups = RowDots(n, a.Up, first, a.F - 1, C, lane).WarpSums();
            if (lane != 0) continue;
            for (int i = 0; i < 8 && first + i < a.F; i++)
            {
                float gate = gates.Get(i);
                hidden[first + i] = gate * (1f / (1f + XMath.Exp(-gate))) * ups.Get(i);   // silu(gate) * up, as SwiGluKernel
            }
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
        Linear(x, a.Head, a.Head, 0, a.Logits.SubView((long)Grid.IdxX * a.Vocab, a.Vocab), a.Vocab, C, warp, warps, lane, add: false);
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

    /// <summary>
    /// y[o] (+)= input . W[o] (+ bias[o]) for o &lt; outputs, W (outputs, inputs): warp w takes the blocks of
    /// eight outputs w, w + warps, ..., so each lane has eight rows' loads in flight (one L2 round trip a block).
    /// </summary>
    private static void Linear(ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, int hasBias, ArrayView<float> y,
        int outputs, int inputs, int warp, int warps, int lane, bool add)
    {
        for (int first = warp * 8; first < outputs; first += warps * 8)
        {
            var sums = RowDots(input, weight, first, outputs - 1, inputs, lane).WarpSums();
            if (lane != 0) continue;
            for (int i = 0; i < 8 && first + i < outputs; i++)
            {
                int o = first + i;
                float sum = sums.Get(i) + (hasBias != 0 ? bias[o] : 0f);
                y[o] = add ? y[o] + sum : sum;
            }
        }
    }

    /// <summary>Eight partial sums, one per weight row of a block.</summary>
    private struct Eight
    {
        public float S0, S1, S2, S3, S4, S5, S6, S7;

        public Eight WarpSums()
        {
            for (int delta = Lanes / 2; delta > 0; delta /= 2)
            {
                S0 += Warp.ShuffleXor(S0, delta); S1 += Warp.ShuffleXor(S1, delta);
                S2 += Warp.ShuffleXor(S2, delta); S3 += Warp.ShuffleXor(S3, delta);
                S4 += Warp.ShuffleXor(S4, delta); S5 += Warp.ShuffleXor(S5, delta);
                S6 += Warp.ShuffleXor(S6, delta); S7 += Warp.ShuffleXor(S7, delta);
            }
            return this;
        }

        /// <summary>The eight rows' products with input[j .. j + 3] added in.</summary>
        public readonly Eight Add(ArrayView<float> input, int j, Float4 w0, Float4 w1, Float4 w2, Float4 w3, Float4 w4, Float4 w5, Float4 w6, Float4 w7)
        {
            float x0 = input[j], x1 = input[j + 1], x2 = input[j + 2], x3 = input[j + 3];
            return new Eight
            {
                S0 = S0 + w0.X * x0 + w0.Y * x1 + w0.Z * x2 + w0.W * x3,
                S1 = S1 + w1.X * x0 + w1.Y * x1 + w1.Z * x2 + w1.W * x3,
                S2 = S2 + w2.X * x0 + w2.Y * x1 + w2.Z * x2 + w2.W * x3,
                S3 = S3 + w3.X * x0 + w3.Y * x1 + w3.Z * x2 + w3.W * x3,
                S4 = S4 + w4.X * x0 + w4.Y * x1 + w4.Z * x2 + w4.W * x3,
                S5 = S5 + w5.X * x0 + w5.Y * x1 + w5.Z * x2 + w5.W * x3,
                S6 = S6 + w6.X * x0 + w6.Y * x1 + w6.Z * x2 + w6.W * x3,
                S7 = S7 + w7.X * x0 + w7.Y * x1 + w7.Z * x2 + w7.W * x3,
            };
        }

        public readonly float Get(int i) => i == 0 ? S0 : i == 1 ? S1 : i == 2 ? S2 : i == 3 ? S3 : i == 4 ? S4 : i == 5 ? S5 : i == 6 ? S6 : S7;
    }

    /// <summary>
    /// This lane's share of input . W[first + i] for i &lt; 8 (rows past last read row last, not written):
    /// floats 4 lane .. 4 lane + 3 of each row, then 128 further, read as Float4 (inputs % 4 == 0).
    /// </summary>
    private static Eight RowDots(ArrayView<float> input, ArrayView<float> weight, int first, int last, int inputs, int lane)
    {
        var w = weight.Cast<Float4>();
        long stride = inputs / 4;
        long r0 = first * stride, r1 = XMath.Min(first + 1, last) * stride, r2 = XMath.Min(first + 2, last) * stride;
        long r3 = XMath.Min(first + 3, last) * stride, r4 = XMath.Min(first + 4, last) * stride, r5 = XMath.Min(first + 5, last) * stride;
        long r6 = XMath.Min(first + 6, last) * stride, r7 = XMath.Min(first + 7, last) * stride;
        var sums = default(Eight);
        // Two stretches of 128 floats a step (v2): sixteen loads in flight a lane instead of eight, so a row of
        // 256 (the small shape's width) is one round trip to L2, not two.
        for (int j = 4 * lane; j < inputs; j += 8 * Lanes)
        {
            long at = j / 4;
            Float4 w0 = w[r0 + at], w1 = w[r1 + at], w2 = w[r2 + at], w3 = w[r3 + at];
            Float4 w4 = w[r4 + at], w5 = w[r5 + at], w6 = w[r6 + at], w7 = w[r7 + at];
            int j2 = j + 4 * Lanes;
            bool second = j2 < inputs;
            long at2 = second ? j2 / 4 : at;   // a stretch past the row rereads the first (its products are not added)
            Float4 v0 = w[r0 + at2], v1 = w[r1 + at2], v2 = w[r2 + at2], v3 = w[r3 + at2];
            Float4 v4 = w[r4 + at2], v5 = w[r5 + at2], v6 = w[r6 + at2], v7 = w[r7 + at2];
            sums = sums.Add(input, j, w0, w1, w2, w3, w4, w5, w6, w7);
            if (second) sums = sums.Add(input, j2, v0, v1, v2, v3, v4, v5, v6, v7);
        }
        return sums;
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

    /// <summary>
    /// Threads a group: 16 warps on CUDA (measured on the H200, small shape: 8 warps 78k new tokens/s, 16
    /// warps 116k; 32 need more registers than a group of 1024 may have); 2 on ILGPU's CPU accelerator, where
    /// every thread is an OS thread and a barrier's cost grows with them (the kernel takes any number of
    /// warps: a warp loops over heads).
    /// </summary>
    public static int GroupThreads(Accelerator accelerator) =>
        Math.Min(accelerator.AcceleratorType == AcceleratorType.Cuda ? 512 : 64, accelerator.MaxNumThreadsPerGroup) / Lanes * Lanes;

    /// <summary>One layer for rows 0 .. rows - 1, groups of threads (0: GroupThreads).</summary>
    public static void Layer(Device device, DecodeLayerArgs args, int rows, int threads = 0)
    {
        var kernel = device.Kernels.Get("decode_layer", LoadLayer);
        if (threads <= 0) threads = DefaultThreads(device, "decode_layer");
        int floats = LayerSharedFloats(args.C, args.Hkv * args.D, args.F, args.Capacity, threads / Lanes, args.D);
        kernel(new KernelConfig(new Index1D(rows), new Index1D(threads), SharedMemoryConfig.RequestDynamic<float>(floats)), args);
    }

    /// <summary>GroupThreads, cut to what the compiled kernel's registers allow on this GPU (H200: 512 fit; a GPU
    /// whose compiler gives the kernel more registers could not launch 512, and would fail instead of slowing).</summary>
    private static int DefaultThreads(Device device, string kernel)
    {
        int threads = GroupThreads(device.Accelerator);
        return device.Kernels.MaxGroupSize(kernel) is int most && most < threads ? Math.Max(Lanes, most / Lanes * Lanes) : threads;
    }

    /// <summary>Final norm and lm_head for rows 0 .. rows - 1, groups of threads (0: GroupThreads).</summary>
    public static void Head(Device device, DecodeHeadArgs args, int rows, int threads = 0)
    {
        var kernel = device.Kernels.Get("decode_head", LoadHead);
        if (threads <= 0) threads = DefaultThreads(device, "decode_head");
        kernel(new KernelConfig(new Index1D(rows), new Index1D(threads), SharedMemoryConfig.RequestDynamic<float>(HeadSharedFloats(args.C))), args);
    }
}
