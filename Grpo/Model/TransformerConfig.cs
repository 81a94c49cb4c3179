// The shape of a Llama-style decoder, and the named presets (as data, the way nanoGPT keeps them).
//
// HeadDim = Dim / Heads; KvHeads < Heads is grouped-query attention (query head h reads kv head
// h / (Heads / KvHeads)); QkvBias adds biases to q/k/v projections (Qwen2); TiedEmbeddings reads the
// logits through the embedding table instead of a separate lm_head.
// JSON uses Hugging Face's config.json keys (hidden_size, num_hidden_layers, ...), so a saved model
// folder is loadable by transformers as LlamaForCausalLM (or Qwen2ForCausalLM with QKV bias).
// Reading accepts rope_theta at the top level (transformers 4) or under rope_parameters
// (transformers 5), and refuses what this decoder would run wrongly: another architecture, RoPE
// scaling, biases beyond Qwen2's q/k/v, sliding-window attention. It also refuses, as a one-line
// ModelFormatException, a file over 1 MB before reading it and any config whose weight matrices
// could not be allocated.
// Tests: Grpo.Tests/Model/TransformerConfigTests.cs, Reliability/FuzzTests.cs and BadInputTests.cs.
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Grpo.Model;

public sealed record TransformerConfig(int VocabSize, int Dim, int Layers, int Heads, int KvHeads, int FfnDim,
    int MaxSeqLen, float RopeTheta = 10000f, float NormEps = 1e-5f, bool QkvBias = false, bool TiedEmbeddings = false)
{
    public int HeadDim => Dim / Heads;

    /// <summary>For unit tests: every code path (GQA, two layers) at a size that runs in milliseconds.</summary>
    public static readonly TransformerConfig Tiny = new(VocabSize: 32, Dim: 16, Layers: 2, Heads: 4, KvHeads: 2, FfnDim: 32, MaxSeqLen: 64);
    /// <summary>The built-in demo on the CPU.</summary>
    public static readonly TransformerConfig Small = new(VocabSize: 64, Dim: 96, Layers: 3, Heads: 4, KvHeads: 4, FfnDim: 256, MaxSeqLen: 192);
    /// <summary>The CPU benchmark shape (shared/bench/torch_cpu_anchor.py).</summary>
    public static readonly TransformerConfig CpuBench = new(VocabSize: 64, Dim: 128, Layers: 4, Heads: 4, KvHeads: 4, FfnDim: 384, MaxSeqLen: 128);
    /// <summary>The small GPU benchmark shape (shared/bench/torch_gpu_anchor.py defaults).</summary>
    public static readonly TransformerConfig GpuSmall = new(VocabSize: 128, Dim: 256, Layers: 4, Heads: 4, KvHeads: 4, FfnDim: 768, MaxSeqLen: 256);
    /// <summary>The mid GPU benchmark shape (about 134M parameters).</summary>
    public static readonly TransformerConfig GpuMid = new(VocabSize: 32000, Dim: 768, Layers: 12, Heads: 12, KvHeads: 12, FfnDim: 2048, MaxSeqLen: 1024);

    public static readonly IReadOnlyDictionary<string, TransformerConfig> Presets = new Dictionary<string, TransformerConfig>
    {
        ["tiny"] = Tiny,
        ["small"] = Small,
        ["cpu-bench"] = CpuBench,
        ["gpu-small"] = GpuSmall,
        ["gpu-mid"] = GpuMid,
    };

    /// <summary>Throws ArgumentException naming the first inconsistent field.</summary>
    public void Validate()
    {
        if (VocabSize <= 0 || Dim <= 0 || Layers <= 0 || Heads <= 0 || KvHeads <= 0 || FfnDim <= 0 || MaxSeqLen <= 0)
            // Not {this}: a record prints HeadDim, which divides by Heads.
            throw new ArgumentException($"config sizes must be positive: vocab_size {VocabSize}, hidden_size {Dim}, layers {Layers}, heads {Heads}, kv heads {KvHeads}, intermediate_size {FfnDim}, max positions {MaxSeqLen}");
        if (Dim % Heads != 0) throw new ArgumentException($"dim {Dim} is not divisible by heads {Heads}");
        if (Heads % KvHeads != 0) throw new ArgumentException($"heads {Heads} is not divisible by kv heads {KvHeads}");
        if (HeadDim % 2 != 0) throw new ArgumentException($"head dim {HeadDim} must be even for rotary positions");
        if (!float.IsFinite(RopeTheta) || RopeTheta <= 0) throw new ArgumentException($"rope theta {RopeTheta} must be finite and positive");
        if (!float.IsFinite(NormEps) || NormEps < 0) throw new ArgumentException($"norm eps {NormEps} must be finite and >= 0");
        // The largest weight matrices must each fit in one array; checked here so a corrupt config
        // is refused before anything is allocated from it.
        long largest = Math.Max((long)VocabSize * Dim, Math.Max((long)FfnDim * Dim, (long)Dim * Dim));
        if (largest > Array.MaxLength) throw new ArgumentException($"a weight matrix of {largest} values is more than one array can hold");
        try { ParameterCount(); }
        catch (OverflowException) { throw new ArgumentException($"{Layers} layers of this width are more parameters than can be counted"); }
    }

    /// <summary>Number of trainable values (embedding counted once when tied); OverflowException past long.</summary>
    public long ParameterCount()
    {
        checked
        {
            long kvDim = (long)KvHeads * HeadDim;
            long attention = (long)Dim * Dim * 2 + 2L * Dim * kvDim + (QkvBias ? Dim + 2 * kvDim : 0);
            long mlp = 3L * Dim * FfnDim;
            long layer = attention + mlp + 2L * Dim;
            return (long)VocabSize * Dim * (TiedEmbeddings ? 1 : 2) + Layers * layer + Dim;
        }
    }

    /// <summary>The config as a Hugging Face config.json.</summary>
    public string ToJson()
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray(QkvBias ? "Qwen2ForCausalLM" : "LlamaForCausalLM"),
            ["model_type"] = QkvBias ? "qwen2" : "llama",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = Dim,
            ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = Heads,
            ["num_key_value_heads"] = KvHeads,
            ["intermediate_size"] = FfnDim,
            ["max_position_embeddings"] = MaxSeqLen,
            ["rope_theta"] = RopeTheta,
            ["rms_norm_eps"] = NormEps,
            ["tie_word_embeddings"] = TiedEmbeddings,
            ["hidden_act"] = "silu",
            ["torch_dtype"] = "float32",
        };
        // Llama's attention_bias would also add a bias to o_proj; Qwen2 biases q, k, v only, as we do.
        if (!QkvBias) json["attention_bias"] = false;
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Longest config.json accepted (Hugging Face's are a few kilobytes).</summary>
    public const int MaxJsonBytes = 1 << 20;

    /// <summary>Reads a config.json file, refusing one over MaxJsonBytes before reading it.</summary>
    public static TransformerConfig FromFile(string path) => FromJson(SafeFile.ReadAllTextBounded(path, MaxJsonBytes), path);

    /// <summary>Reads a Hugging Face config.json (Llama or Qwen2); throws ModelFormatException on what this decoder cannot run.</summary>
    public static TransformerConfig FromJson(string json, string source = "config.json")
    {
        if (json.Length > MaxJsonBytes) throw new ModelFormatException($"{source}: {json.Length} characters is more than the {MaxJsonBytes} allowed for a config");
        JsonObject root;
        try { root = JsonNode.Parse(json) as JsonObject ?? throw new ModelFormatException($"{source}: not a JSON object"); }
        catch (JsonException e) { throw new ModelFormatException($"{source}: not valid JSON ({e.Message})", e); }

        try
        {
            int Int(string key) => root[key]?.GetValue<int>() ?? throw new ModelFormatException($"{source}: missing '{key}'");
            string modelType = root["model_type"]?.GetValue<string>() ?? "llama";
            if (modelType is not ("llama" or "qwen2")) throw new ModelFormatException($"{source}: model_type '{modelType}' is not llama or qwen2");
            if (root["architectures"] is JsonArray architectures && architectures.Count > 0
                && !architectures.Any(a => a is JsonValue v && v.TryGetValue(out string? name) && name is "LlamaForCausalLM" or "Qwen2ForCausalLM"))
                throw new ModelFormatException($"{source}: architectures {architectures.ToJsonString()} is not LlamaForCausalLM or Qwen2ForCausalLM");
            string act = root["hidden_act"]?.GetValue<string>() ?? "silu";
            if (act != "silu") throw new ModelFormatException($"{source}: hidden_act '{act}' is not silu");
            if (root["rope_scaling"] is JsonObject scaling && RopeType(scaling) != "default")
                throw new ModelFormatException($"{source}: rope_scaling of type '{RopeType(scaling)}' is not supported");
            // transformers 5 writes rope_theta (and the scaling type) under rope_parameters; 4 at the top level.
            var ropeParameters = root["rope_parameters"] as JsonObject;
            if (ropeParameters != null && RopeType(ropeParameters) != "default")
                throw new ModelFormatException($"{source}: rope_parameters of type '{RopeType(ropeParameters)}' is not supported");
            float ropeTheta = ropeParameters?["rope_theta"]?.GetValue<float>() ?? root["rope_theta"]?.GetValue<float>() ?? 10000f;
            if (modelType == "llama" && root["attention_bias"]?.GetValue<bool>() == true)
                throw new ModelFormatException($"{source}: Llama attention_bias (bias on o_proj too) is not supported");
            if (root["mlp_bias"]?.GetValue<bool>() == true) throw new ModelFormatException($"{source}: mlp_bias is not supported");
            if (root["use_sliding_window"]?.GetValue<bool>() == true)
                throw new ModelFormatException($"{source}: use_sliding_window (sliding-window attention) is not supported");

            int heads = Int("num_attention_heads");
            var config = new TransformerConfig(
                VocabSize: Int("vocab_size"),
                Dim: Int("hidden_size"),
                Layers: Int("num_hidden_layers"),
                Heads: heads,
                KvHeads: root["num_key_value_heads"]?.GetValue<int>() ?? heads,
                FfnDim: Int("intermediate_size"),
                MaxSeqLen: Int("max_position_embeddings"),
                RopeTheta: ropeTheta,
                NormEps: root["rms_norm_eps"]?.GetValue<float>() ?? 1e-6f,
                QkvBias: modelType == "qwen2",
                TiedEmbeddings: root["tie_word_embeddings"]?.GetValue<bool>() ?? false);
            config.Validate();   // first: HeadDim below divides by the number of heads
            if (root["head_dim"]?.GetValue<int>() is int headDim && headDim != config.HeadDim)
                throw new ModelFormatException($"{source}: head_dim {headDim} differs from hidden_size / num_attention_heads = {config.HeadDim}");
            return config;
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException)
        {
            throw new ModelFormatException($"{source}: {e.Message}", e);
        }
    }

    private static string RopeType(JsonObject rope) =>
        (rope["rope_type"] ?? rope["type"])?.GetValue<string>() ?? "default";
}
