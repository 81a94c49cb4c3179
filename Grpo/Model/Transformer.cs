// A Llama-style decoder-only transformer (Llama 2/3; Qwen2 with QKV bias), read like nanoGPT's model.py.
//
//   x = embed(tokens)                                            (B, T, C)
//   per layer:  h = x + o_proj(Attention(Rope(q(n)), Rope(k(n)), v(n)))   n = RmsNorm(x)   (pre-norm)
//               x = h + down_proj(silu(gate_proj(n)) * up_proj(n))        n = RmsNorm(h)
//   logits = lm_head(RmsNorm(x))                                 (B, T, V); lm_head = embed when tied
// Attention is causal and grouped-query (Heads query heads share KvHeads key/value heads); a key
// mask marks padding and explicit positions let a left-padded row start its rotary positions at 0.
// Weights carry Hugging Face names and (out, in) layouts, so a state dict maps one to one.
// Initialisation (GPT-2's recipe): every matrix N(0, 0.02), the two projections that write into the
// residual stream (o_proj, down_proj) N(0, 0.02 / sqrt(2 * layers)) so the residual's variance does
// not grow with depth; norm weights 1, biases 0; all drawn from one seeded Rng in parameter order.
// The second Forward decodes incrementally through a KvCache (Model/KvCache.cs), under NoGrad; on a GPU
// a one-token step runs as one fused kernel a layer (Transformer.FusedDecode.cs) when FusedDecode is set,
// or as a few launches a layer spread over the GPU (Transformer.SpreadDecode.cs) when SpreadDecode is set.
// Device: the parameters live on one Device; To(device) gives a copy there (the GPU runs the same
// Run below, each op taking its kernel path). Inputs (tokens, masks, positions) stay host arrays.
// Tests: Grpo.Tests/Model/TransformerTests.cs, and against PyTorch in Grpo.Tests/Model/PyTorchFixtureTests.cs.
using Grpo.Compute;
using Grpo.Ops;
using Grpo.Sampling;

namespace Grpo.Model;

public sealed partial class Transformer
{
    private sealed class Layer
    {
        public required Tensor InputNorm, Q, K, V, O, PostNorm, Gate, Up, Down;
        public Tensor? QBias, KBias, VBias;
    }

    private readonly Tensor embedTokens, finalNorm, lmHead;
    private readonly Layer[] layers;

    public TransformerConfig Config { get; }
    /// <summary>Where the parameters live.</summary>
    public Device Device { get; }

    /// <summary>What the linear layers (q, k, v, o, gate, up, down, lm_head) multiply in (Ops/MatMulPrecision.cs);
    /// everything else stays fp32. Fp32 unless set; a copy (CopyTo) keeps it.</summary>
    public MatMulPrecision Precision { get; set; } = MatMulPrecision.Fp32;

    /// <summary>Every trainable tensor with its Hugging Face name, in state-dict order.</summary>
    public IReadOnlyList<(string Name, Tensor Value)> Parameters { get; }

    public Transformer(TransformerConfig config, ulong seed) : this(config, new Rng(seed)) { }

    /// <summary>With rng null the matrices are left zero (for loading weights into).</summary>
    internal Transformer(TransformerConfig config, Rng? rng, Device? device = null)
    {
        config.Validate();
        Config = config;
        Device = device ?? Device.Cpu;
        int C = config.Dim, F = config.FfnDim, V = config.VocabSize, kvDim = config.KvHeads * config.HeadDim;
        float std = 0.02f, residualStd = 0.02f / MathF.Sqrt(2 * config.Layers);
        var parameters = new List<(string, Tensor)>();

        Tensor Add(string name, float initStd, params int[] shape) => AddFilled(name, initStd, 0f, shape);
        Tensor Ones(string name, int size) => AddFilled(name, 0, 1f, size);
        Tensor AddFilled(string name, float initStd, float fill, params int[] shape)
        {
            var data = new float[Tensor.SizeOf(shape)];
            if (rng != null)   // every tensor draws from the rng, a constant one too, so the draws stay in step
                for (int i = 0; i < data.Length; i++) data[i] = initStd * rng.NextGaussian();
            if (fill != 0) Array.Fill(data, fill);
            var tensor = Device.IsCpu ? Tensor.Parameter(data, shape) : new Tensor(DeviceArray.Upload(Device, data, scoped: false), shape) { RequiresGrad = true };
            tensor.Name = name;
            parameters.Add((name, tensor));
            return tensor;
        }

        embedTokens = Add("model.embed_tokens.weight", std, V, C);
        layers = new Layer[config.Layers];
        for (int l = 0; l < config.Layers; l++)
        {
            string prefix = $"model.layers.{l}.";
            var q = Add(prefix + "self_attn.q_proj.weight", std, C, C);
            var qBias = config.QkvBias ? Add(prefix + "self_attn.q_proj.bias", 0, C) : null;
            var k = Add(prefix + "self_attn.k_proj.weight", std, kvDim, C);
            var kBias = config.QkvBias ? Add(prefix + "self_attn.k_proj.bias", 0, kvDim) : null;
            var v = Add(prefix + "self_attn.v_proj.weight", std, kvDim, C);
            var vBias = config.QkvBias ? Add(prefix + "self_attn.v_proj.bias", 0, kvDim) : null;
            var o = Add(prefix + "self_attn.o_proj.weight", residualStd, C, C);
            var gate = Add(prefix + "mlp.gate_proj.weight", std, F, C);
            var up = Add(prefix + "mlp.up_proj.weight", std, F, C);
            var down = Add(prefix + "mlp.down_proj.weight", residualStd, C, F);
            layers[l] = new Layer
            {
                Q = q, QBias = qBias, K = k, KBias = kBias, V = v, VBias = vBias, O = o,
                Gate = gate, Up = up, Down = down,
                InputNorm = Ones(prefix + "input_layernorm.weight", C),
                PostNorm = Ones(prefix + "post_attention_layernorm.weight", C),
            };
        }
        finalNorm = Ones("model.norm.weight", C);
        lmHead = config.TiedEmbeddings ? embedTokens : Add("lm_head.weight", std, V, C);
        Parameters = parameters;
    }

    /// <summary>This model on device: itself when it is there already, else a copy of its weights there.</summary>
    public Transformer To(Device device) => device == Device ? this : CopyTo(device);

    /// <summary>A copy of the weights on device (a new model, even on the same device).</summary>
    public Transformer CopyTo(Device device)
    {
        var copy = new Transformer(Config, null, device) { Precision = Precision };
        for (int i = 0; i < Parameters.Count; i++) copy.Parameters[i].Value.CopyFrom(Parameters[i].Value);
        return copy;
    }

    /// <summary>Logits (B, T, V) for a batch of sequences. keyMask (B*T) is false at padding; positions (B*T) default to 0..T-1 in each row.</summary>
    public Tensor Forward(int[] tokens, int batch, int seqLen, bool[]? keyMask = null, int[]? positions = null)
    {
        CheckInputs(tokens, batch, seqLen, keyMask, positions);
        return Run(tokens, batch, seqLen, positions ?? DefaultPositions(batch, seqLen, 0),
            (layer, q, k, v) => Op.Attention(q, k, v, keyMask));
    }

    /// <summary>
    /// Logits (B, T, V) for T new tokens per row, whose keys and values are appended to the cache;
    /// earlier tokens are read from it. Positions default to cache.Length + t. Runs under Autograd.NoGrad().
    /// </summary>
    public Tensor Forward(int[] tokens, int batch, int seqLen, KvCache cache, bool[]? keyMask = null, int[]? positions = null)
    {
        if (Autograd.IsRecording)
            throw new InvalidOperationException("the cached forward gives no gradients: call it inside using (Autograd.NoGrad())");
        CheckInputs(tokens, batch, seqLen, keyMask, positions);
        cache.CheckFits(Config, batch, seqLen);
        int start = cache.Length;
        cache.WriteKeyMask(keyMask, seqLen);
        positions ??= DefaultPositions(batch, seqLen, start);
        if (UsesSpreadDecode(seqLen, cache))
        {
            var spreadLogits = SpreadStep(tokens, batch, positions, cache);   // Transformer.SpreadDecode.cs: the same Run, a few launches a layer
            cache.Advance(seqLen);
            return spreadLogits;
        }
        if (UsesFusedDecode(seqLen, cache))
        {
            var stepLogits = DecodeStep(tokens, batch, positions, cache);   // Transformer.FusedDecode.cs: the same Run, fused
            cache.Advance(seqLen);
            return stepLogits;
        }
        var logits = Run(tokens, batch, seqLen, positions,
            (layer, q, k, v) =>
            {
                var (keys, values) = cache.Append(layer, k, v);                          // (B, capacity, Hkv, D), filled to start + T
                return Op.Attention(q, keys, values, cache.KeyMask, queryOffset: start);  // keys past start + t are never read (causal)
            });
        cache.Advance(seqLen);
        return logits;
    }

    private delegate Tensor AttentionOver(int layer, Tensor q, Tensor k, Tensor v);

    private Tensor Run(int[] tokens, int B, int T, int[] positions, AttentionOver attend)
    {
        var config = Config;
        int C = config.Dim, Hq = config.Heads, Hkv = config.KvHeads, D = config.HeadDim;

        var x = Op.Embedding(embedTokens, tokens).Reshape(B, T, C);                    // (B, T, C)
        for (int l = 0; l < layers.Length; l++)
        {
            var layer = layers[l];
            var n = Op.RmsNorm(x, layer.InputNorm, config.NormEps);                   // (B, T, C)
            var q = Linear(n, layer.Q, layer.QBias).Reshape(B, T, Hq, D);             // (B, T, Hq, D)
            var k = Linear(n, layer.K, layer.KBias).Reshape(B, T, Hkv, D);            // (B, T, Hkv, D)
            var v = Linear(n, layer.V, layer.VBias).Reshape(B, T, Hkv, D);            // (B, T, Hkv, D)
            q = Op.Rope(q, positions, config.RopeTheta);
            k = Op.Rope(k, positions, config.RopeTheta);
            var attended = attend(l, q, k, v).Reshape(B, T, C);                       // (B, T, C)
            x = Op.Add(x, Linear(attended, layer.O));                                 // (B, T, C)

            n = Op.RmsNorm(x, layer.PostNorm, config.NormEps);                        // (B, T, C)
            var hidden = Op.SwiGlu(Linear(n, layer.Gate), Linear(n, layer.Up));        // (B, T, F)
            x = Op.Add(x, Linear(hidden, layer.Down));                                // (B, T, C)
        }
        x = Op.RmsNorm(x, finalNorm, config.NormEps);                                 // (B, T, C)
        return Linear(x, lmHead);                                                     // (B, T, V)
    }

    /// <summary>y = x W^T + b with W stored (out, in) as Hugging Face stores it.</summary>
    private Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        var y = Op.MatMul(x, weight, transposeB: true, precision: Precision);
        return bias is null ? y : Op.Add(y, bias);
    }

    private static int[] DefaultPositions(int batch, int seqLen, int start)
    {
        var positions = new int[batch * seqLen];
        for (int i = 0; i < positions.Length; i++) positions[i] = start + i % seqLen;
        return positions;
    }

    private void CheckInputs(int[] tokens, int batch, int seqLen, bool[]? keyMask, int[]? positions)
    {
        if (batch <= 0 || seqLen <= 0) throw new ArgumentException($"batch ({batch}) and sequence length ({seqLen}) must be positive");
        int n = batch * seqLen;
        if (tokens.Length != n) throw new ArgumentException($"{tokens.Length} tokens for batch {batch} x length {seqLen}");
        if (keyMask != null && keyMask.Length != n) throw new ArgumentException($"keyMask has {keyMask.Length} entries, expected {n}");
        if (positions != null && positions.Length != n) throw new ArgumentException($"positions has {positions.Length} entries, expected {n}");
        foreach (var token in tokens)
            if ((uint)token >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), token, $"token id outside the vocabulary [0, {Config.VocabSize})");
    }
}
