// The fused decode step: a cached Forward of one token a row on a GPU, as one kernel a layer and one
// for the final norm and lm_head (Compute/Kernels/DecodeKernels.cs), instead of Run's ~18 launches a
// layer. Same computation as Run (the kernel's header quotes its lines); the embedding gather is done
// by layer 0's kernel. Host work a step: three small uploads (tokens, positions, the key mask as 0/1),
// none per layer, and no download.
// When: FusedDecode is set, the model is on an ILGPU device (CUDA or the CPU accelerator), T == 1,
// widths and the head dimension divisible by 4 (Float4 loads), the row's vectors fit 48 KB of shared memory, and a layer's
// weights are at most MaxFusedLayerBytes: every row's group re-reads the whole layer, which pays while
// it stays in L2 (the small shape's 3.4 MB; the mid shape's 28 MB keeps the op-by-op path). lm_head is
// fused under the same bound, else it stays Op.RmsNorm + Op.MatMul. The kernels multiply in fp32, so a
// model whose Precision is bf16 decodes op by op (its sampled log-probs then match its training forward's).
// Tests: Grpo.Tests/Compute/FusedDecodeTests.cs (fused vs op-by-op vs the CPU model, several steps,
// left padding, a gathered cache, QKV bias and GQA; greedy generation), DeviceTensorTests.cs.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;

namespace Grpo.Model;

public sealed partial class Transformer
{
    /// <summary>Largest layer (and lm_head) in bytes the fused decode step takes: it must stay in L2 (50 MB on an H200) while every row reads it.</summary>
    public const long MaxFusedLayerBytes = 8L << 20;

    private const int MaxFusedSharedBytes = 48 << 10;

    /// <summary>Whether a one-token cached step on a GPU runs as fused kernels (when it fits; see the file header). Default true; bench's generate_unfused clears it.</summary>
    public bool FusedDecode { get; set; } = true;

    /// <summary>Threads a group of the fused kernels (a multiple of 32); 0 = DecodeKernels.GroupThreads' choice. Bench times several.</summary>
    public int DecodeGroupThreads { get; set; }

    private int DecodeThreads => DecodeGroupThreads > 0 ? DecodeGroupThreads : DecodeKernels.GroupThreads(Device.Accelerator);

    /// <summary>Whether a cached forward of seqLen tokens a row through this cache takes the fused path.</summary>
    public bool UsesFusedDecode(int seqLen, KvCache cache) =>
        FusedDecode && Precision == MatMulPrecision.Fp32 && !Device.IsCpu && seqLen == 1 && FusedDecodeFits(Config, DecodeThreads / 32, cache.Capacity);

    /// <summary>Whether the fused kernels can run this shape (Float4 widths, 48 KB of shared memory) and it pays (a layer within MaxFusedLayerBytes).</summary>
    internal static bool FusedDecodeFits(TransformerConfig c, int warps, int capacity)
    {
        int kvDim = c.KvHeads * c.HeadDim;
        long layerBytes = 4L * ((long)c.Dim * c.Dim * 2 + 2L * c.Dim * kvDim + 3L * c.Dim * c.FfnDim);
        long sharedBytes = 4L * DecodeKernels.LayerSharedFloats(c.Dim, kvDim, c.FfnDim, capacity, warps, c.HeadDim);
        return c.Dim % 4 == 0 && c.FfnDim % 4 == 0 && c.HeadDim % 4 == 0 && warps > 0
            && layerBytes <= MaxFusedLayerBytes && sharedBytes <= MaxFusedSharedBytes;
    }

    /// <summary>Logits (B, 1, V) of one new token a row; writes its keys and values at cache.Length (the caller advances the cache).</summary>
    private Tensor DecodeStep(int[] tokens, int B, int[] positions, KvCache cache)
    {
        var c = Config;
        int C = c.Dim, V = c.VocabSize;
        int maxPosition = 0;
        foreach (int p in positions)
        {
            if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"Rope: position {p} is negative");
            maxPosition = Math.Max(maxPosition, p);
        }
        var (cos, sin) = Op.RopeTableOnDevice(Device, c.RopeTheta, c.HeadDim, maxPosition);
        var x = Tensor.Empty(Device, [B, C]);                                         // (B, C), the residual stream
        var args = new DecodeLayerArgs
        {
            X = x.View, Embed = embedTokens.View, Tokens = Device.Indices(tokens), Positions = Device.Indices(positions),
            KeyMask = Device.Indices(cache.KeyMaskValues()), Cos = cos, Sin = sin,
            C = C, Hq = c.Heads, Hkv = c.KvHeads, D = c.HeadDim, F = c.FfnDim, Capacity = cache.Capacity, Length = cache.Length,
            HasBias = c.QkvBias ? 1 : 0, Eps = c.NormEps, Scale = 1f / MathF.Sqrt(c.HeadDim),
        };
        for (int l = 0; l < layers.Length; l++)
        {
            var layer = layers[l];
            var (keys, values) = cache.DeviceBuffers(l);
            args.FromTokens = l == 0 ? 1 : 0;
            args.InputNorm = layer.InputNorm.View; args.PostNorm = layer.PostNorm.View;
            args.Q = layer.Q.View; args.K = layer.K.View; args.V = layer.V.View; args.O = layer.O.View;
            args.QBias = (layer.QBias ?? layer.Q).View; args.KBias = (layer.KBias ?? layer.K).View; args.VBias = (layer.VBias ?? layer.V).View;
            args.Gate = layer.Gate.View; args.Up = layer.Up.View; args.Down = layer.Down.View;
            args.CacheK = keys; args.CacheV = values;
            DecodeKernels.Layer(Device, args, B, DecodeGroupThreads);
        }
        if (4L * V * C > MaxFusedLayerBytes)
            return Linear(Op.RmsNorm(x.Reshape(B, 1, C), finalNorm, c.NormEps), lmHead);   // (B, 1, V)
        var logits = Tensor.Empty(Device, [B, 1, V]);                                  // (B, 1, V)
        DecodeKernels.Head(Device, new DecodeHeadArgs { X = x.View, Norm = finalNorm.View, Head = lmHead.View, Logits = logits.View, C = C, Vocab = V, Eps = c.NormEps }, B, DecodeGroupThreads);
        return logits;
    }
}
