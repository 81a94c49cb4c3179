// Checkpoints: a folder from which a model loads, and from which a training run continues exactly.
//
//   model.safetensors       the weights under their Hugging Face names (F32)
//   config.json             the TransformerConfig as a Hugging Face config.json
//   optimizer.safetensors   AdamW's moments: "m.<name>" and "v.<name>" for every parameter (optional)
//   trainer_state.json      {"step", "rng_state", the AdamW hyperparameters, "extra": caller's JSON} (optional)
//   the tokenizer           when the caller passes one (TokenizerFiles: char_tokenizer.json or tokenizer.json)
// model.safetensors + config.json alone is a folder transformers can load (LlamaForCausalLM).
// Loading checks every tensor against the shape the config implies and names the tensor and the
// file on a mismatch, a missing tensor or an unexpected one. Weights stored as F16/BF16 are widened.
// The RNG state is a ulong and is written as a string: JSON numbers lose digits above 2^53.
// Every file is written atomically (SafeFile); a training run keeps its checkpoints through
// CheckpointStore, which adds a manifest of sizes and checksums and finds the newest complete one.
// Before weights are allocated, the config's parameter count is checked against the file's size.
// Tests: Grpo.Tests/Model/CheckpointTests.cs, Reliability/BadInputTests.cs.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Optim;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Model;

public static class Checkpoint
{
    public const string ModelFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "trainer_state.json";

    /// <summary>Longest trainer_state.json accepted (the caller's extra JSON included).</summary>
    public const long MaxStateBytes = 16L << 20;

    /// <summary>The weights and config only (an inference checkpoint).</summary>
    public static void SaveModel(string folder, Transformer model)
    {
        Directory.CreateDirectory(folder);
        SafeFile.WriteAllTextAtomic(Path.Combine(folder, ConfigFile), model.Config.ToJson());
        SafeTensors.Write(Path.Combine(folder, ModelFile), model.Parameters,
            new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Everything a run needs to continue: weights, config, optimizer moments and step, RNG state,
    /// the caller's extra JSON, and the tokenizer when given (so that the folder's token ids mean something).</summary>
    public static void Save(string folder, Transformer model, AdamW optimizer, Rng rng, JsonObject? extra = null, ITokenizer? tokenizer = null)
    {
        SaveModel(folder, model);
        if (tokenizer is not null) TokenizerFiles.Save(folder, tokenizer);
        var moments = new List<(string, Tensor)>();
        foreach (var slot in optimizer.Slots)
        {
            moments.Add(("m." + slot.Name, slot.M));
            moments.Add(("v." + slot.Name, slot.V));
        }
        SafeTensors.Write(Path.Combine(folder, OptimizerFile), moments);
        var state = new JsonObject
        {
            ["step"] = optimizer.StepCount,
            ["rng_state"] = rng.State.ToString(CultureInfo.InvariantCulture),
            ["learning_rate"] = optimizer.LearningRate,
            ["beta1"] = optimizer.Beta1,
            ["beta2"] = optimizer.Beta2,
            ["eps"] = optimizer.Eps,
            ["weight_decay"] = optimizer.WeightDecay,
            ["extra"] = extra?.DeepClone(),
        };
        SafeFile.WriteAllTextAtomic(Path.Combine(folder, StateFile), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Reads config.json and model.safetensors from the folder.</summary>
    public static Transformer LoadModel(string folder)
    {
        var config = TransformerConfig.FromFile(Path.Combine(folder, ConfigFile));
        CheckWeightsFitFile(Path.Combine(folder, ModelFile), config);
        var model = new Transformer(config, rng: null);
        LoadWeights(Path.Combine(folder, ModelFile), model);
        return model;
    }

    /// <summary>Copies every parameter of the model from a safetensors file, checking names and shapes.</summary>
    public static void LoadWeights(string path, Transformer model)
    {
        using var reader = new SafeTensorsReader(path);
        var expected = model.Parameters.Select(p => p.Name).ToHashSet();
        foreach (var entry in reader.Entries)
        {
            if (!expected.Contains(entry.Name) && !IsHarmlessExtra(entry.Name, model.Config))
                throw new ModelFormatException($"{path}: unexpected tensor '{entry.Name}' for this config");
        }
        foreach (var (name, value) in model.Parameters)
            CopyChecked(reader, name, value);
    }

    /// <summary>Restores the optimizer's moments and step and the RNG state; returns the extra JSON saved with them (or null).</summary>
    public static JsonObject? LoadTrainingState(string folder, AdamW optimizer, Rng rng)
    {
        string statePath = Path.Combine(folder, StateFile);
        if (!File.Exists(statePath)) throw new ModelFormatException($"{statePath}: file not found (not a training checkpoint)");
        var (step, rngState, extra) = ParseTrainingState(SafeFile.ReadAllTextBounded(statePath, MaxStateBytes), statePath);

        string optimizerPath = Path.Combine(folder, OptimizerFile);
        using (var reader = new SafeTensorsReader(optimizerPath))
            foreach (var slot in optimizer.Slots)
            {
                CopyChecked(reader, "m." + slot.Name, slot.M);
                CopyChecked(reader, "v." + slot.Name, slot.V);
            }
        optimizer.StepCount = step;
        rng.State = rngState;
        return extra;
    }

    /// <summary>The step, RNG state and extra JSON of a trainer_state.json text; ModelFormatException naming <paramref name="source"/> when malformed.</summary>
    internal static (int Step, ulong RngState, JsonObject? Extra) ParseTrainingState(string json, string source)
    {
        JsonObject state;
        try { state = JsonNode.Parse(json) as JsonObject ?? throw new ModelFormatException($"{source}: not a JSON object"); }
        catch (JsonException e) { throw new ModelFormatException($"{source}: not valid JSON ({e.Message})", e); }
        try
        {
            int step = state["step"]?.GetValue<int>() ?? throw new ModelFormatException($"{source}: missing 'step'");
            if (step < 0) throw new ModelFormatException($"{source}: step {step} is negative");
            string rngText = state["rng_state"]?.GetValue<string>() ?? throw new ModelFormatException($"{source}: missing 'rng_state'");
            ulong rngState = ulong.Parse(rngText, CultureInfo.InvariantCulture);
            return (step, rngState, state["extra"]?.DeepClone() as JsonObject);
        }
        // ArgumentException: a repeated key, which JsonNode reports only when the object is first read.
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException or ArgumentException)
        {
            throw new ModelFormatException($"{source}: malformed step, rng_state or extra ({e.Message})", e);
        }
    }

    /// <summary>Refuses a config whose weights could not be in the file even as 2-byte floats, before
    /// any of them is allocated: a corrupt config.json (vocab_size 2^30) must not exhaust memory.</summary>
    private static void CheckWeightsFitFile(string path, TransformerConfig config)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new ModelFormatException($"{path}: file not found");
        long parameters = config.ParameterCount();
        if (parameters > info.Length / 2)
            throw new ModelFormatException($"{path}: the config needs {parameters} parameters (2 bytes each even as 16-bit floats) but the file has {info.Length} bytes");
    }

    /// <summary>A stored tensor the model does not need: older Llama checkpoints store RoPE's inverse
    /// frequencies, and a tied model may still store lm_head.</summary>
    internal static bool IsHarmlessExtra(string name, TransformerConfig config) =>
        name.EndsWith("rotary_emb.inv_freq") || (config.TiedEmbeddings && name == "lm_head.weight");

    internal static void CopyChecked(SafeTensorsReader reader, string name, Tensor target)
    {
        if (!reader.Contains(name)) throw new ModelFormatException($"{reader.Path}: missing tensor '{name}'");
        var shape = reader.Entry(name).Shape;
        if (!shape.AsSpan().SequenceEqual(target.Shape))
            throw new ModelFormatException($"{reader.Path}: tensor '{name}' has shape [{string.Join(", ", shape)}], the config needs [{string.Join(", ", target.Shape)}]");
        target.CopyFrom(reader.Read(name).Data);
    }
}
