// The spread decode step (a design next to op by op and the fused kernels of DecodeKernels.cs): a one-token cached step on a GPU as five launches a layer and one for the final
// norm and lm_head, each over all rows at once with its weight read once (Compute/Kernels/DecodeSpreadKernels.cs
// has the kernels, the equations and why): qkv (+ RoPE, k and v into the cache; layer 0 gathers x from the
// embedding table), attention (AttentionKernels v3 over the cache), o_proj + residual, gate/up + SwiGLU,
// down + residual. Host work a step: the uploads of the fused step (tokens, positions, the key mask), no download.
// When: SpreadDecode is set (default off; it takes precedence over FusedDecode), the model is on an ILGPU
// device, in fp32, T == 1, and the widths C and F are multiples of 4 (Float4 loads). Any layer size: the
// weights are read once a launch, so the mid shape (where the fused step is not taken) can take it too.
// Tests: Grpo.Tests/Compute/SpreadDecodeTests.cs (against the op-by-op path and the CPU model).
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;

namespace Grpo.Model;

public sealed partial class Transformer
{
    /// <summary>Whether a one-token cached step on a GPU runs as the spread kernels (when it fits; see the file header). Default false; bench's generate_spread sets it.</summary>
    public bool SpreadDecode { get; set; }

    /// <summary>Rows a group of the spread kernels takes, 1 to 64; 0 = 64 (each weight read once a launch). Fewer give more
    /// groups (the small shape's o_proj and down have 8 column blocks), each re-reading the weight from L2. Bench times 16 and 32.</summary>
    public int SpreadRowsPerBlock { get; set; }

    /// <summary>Whether a cached forward of seqLen tokens a row through this cache takes the spread path.</summary>
    public bool UsesSpreadDecode(int seqLen, KvCache cache) =>
        SpreadDecode && Precision == MatMulPrecision.Fp32 && !Device.IsCpu && seqLen == 1 && SpreadDecodeFits(Config);

    /// <summary>Whether the spread kernels can run this shape: Float4 loads along C and F.</summary>
    internal static bool SpreadDecodeFits(TransformerConfig c) => c.Dim % 4 == 0 && c.FfnDim % 4 == 0 && c.HeadDim % 2 == 0;

    /// <summary>Logits (B, 1, V) of one new token a row; writes its keys and values at cache.Length (the caller advances the cache).</summary>
    private Tensor SpreadStep(int[] tokens, int B, int[] positions, KvCache cache)
    {
        var c = Config;
        int C = c.Dim, F = c.FfnDim, V = c.VocabSize, Hq = c.Heads, Hkv = c.KvHeads, D = c.HeadDim;
        int maxPosition = 0;
        foreach (int p in positions)
        {
            if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"Rope: position {p} is negative");
            maxPosition = Math.Max(maxPosition, p);
        }
        var (cos, sin) = Op.RopeTableOnDevice(Device, c.RopeTheta, D, maxPosition);
        var x = Tensor.Empty(Device, [B, C]);             // (B, C), the residual stream
        var q = Tensor.Empty(Device, [B, C]);             // (B, Hq D), roped
        var attended = Tensor.Empty(Device, [B, C]);      // (B, Hq D)
        var hidden = Tensor.Empty(Device, [B, F]);        // (B, F)
        var logits = Tensor.Empty(Device, [B, 1, V]);     // (B, 1, V)
        using var probs = Device.Pool.Rent<float>((long)B * Hq * cache.Capacity);   // (B, Hq, 1, capacity), the attention's P
        var keyMask = Device.Indices(cache.KeyMaskValues());
        var shape = AttentionKernels.Shape(B, 1, cache.Capacity, Hq, Hkv, D, cache.Length, hasMask: true);
        var tokenView = Device.Indices(tokens);
        var basis = new SpreadArgs   // every view set (unused ones to any valid view)
        {
            A = x.View, Embed = embedTokens.View, Norm = x.View, Tokens = tokenView, Positions = Device.Indices(positions),
            W0 = x.View, W1 = x.View, W2 = x.View, B0 = x.View, B1 = x.View, B2 = x.View,
            Out = x.View, CacheK = x.View, CacheV = x.View, Cos = cos, Sin = sin,
            M = B, RowsPerBlock = SpreadRowsPerBlock, Hq = Hq, Hkv = Hkv, D = D, Capacity = cache.Capacity, Length = cache.Length, Eps = c.NormEps,
        };
        for (int l = 0; l < layers.Length; l++)
        {
            var layer = layers[l];
            var (keys, values) = cache.DeviceBuffers(l);
            var qkv = basis;
            qkv.Mode = DecodeSpreadKernels.ModeQkv; qkv.K = C; qkv.N = C;
            qkv.HasNorm = 1; qkv.Norm = layer.InputNorm.View; qkv.FromTokens = l == 0 ? 1 : 0;
            qkv.W0 = layer.Q.View; qkv.W1 = layer.K.View; qkv.W2 = layer.V.View;
            qkv.HasBias = c.QkvBias ? 1 : 0;
            qkv.B0 = (layer.QBias ?? layer.Q).View; qkv.B1 = (layer.KBias ?? layer.K).View; qkv.B2 = (layer.VBias ?? layer.V).View;
            qkv.Out = q.View; qkv.CacheK = keys; qkv.CacheV = values;
            DecodeSpreadKernels.Launch(Device, qkv);

            AttentionKernels.Forward(Device, q.View, keys, values, keyMask, attended.View, probs.View, shape);

            var o = basis;
            o.Mode = DecodeSpreadKernels.ModePlain; o.A = attended.View; o.K = C; o.N = C; o.W0 = layer.O.View; o.Out = x.View; o.Accumulate = 1;
            DecodeSpreadKernels.Launch(Device, o);

            var gateUp = basis;
            gateUp.Mode = DecodeSpreadKernels.ModeGateUp; gateUp.K = C; gateUp.N = F; gateUp.HasNorm = 1; gateUp.Norm = layer.PostNorm.View;
            gateUp.W0 = layer.Gate.View; gateUp.W1 = layer.Up.View; gateUp.Out = hidden.View;
            DecodeSpreadKernels.Launch(Device, gateUp);

            var down = basis;
            down.Mode = DecodeSpreadKernels.ModePlain; down.A = hidden.View; down.K = F; down.N = C; down.W0 = layer.Down.View; down.Out = x.View; down.Accumulate = 1;
            DecodeSpreadKernels.Launch(Device, down);
        }
        var head = basis;
        head.Mode = DecodeSpreadKernels.ModePlain; head.K = C; head.N = V; head.HasNorm = 1; head.Norm = finalNorm.View;
        head.W0 = lmHead.View; head.Out = logits.View;
        DecodeSpreadKernels.Launch(Device, head);
        return logits;
    }
}
