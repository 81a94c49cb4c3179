// Checkpoints: a folder from which a model loads, and from which a training run continues exactly.
//
//   model.safetensors       the weights under their Hugging Face names (F32)
//   config.json             the TransformerConfig as a Hugging Face config.json
//   optimizer.safetensors   AdamW's moments: "m.<name>" and "v.<name>" for every parameter (optional)
//   trainer_state.json      {"step", "rng_state", the AdamW hyperparameters, "extra": caller's JSON} (optional)
// model.safetensors + config.json alone is a folder transformers can load (LlamaForCausalLM).
// Loading checks every tensor against the shape the config implies and names the tensor and the
// file on a mismatch, a missing tensor or an unexpected one. Weights stored as F16/BF16 are widened.
// The RNG state is a ulong and is written as a string: JSON numbers lose digits above 2^53.
// Tests: Grpo.Tests/Model/CheckpointTests.cs.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Optim;
using Grpo.Sampling;

namespace Grpo.Model;

public static class Checkpoint
{
    public const string ModelFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "trainer_state.json";

    /// <summary>The weights and config only (an inference checkpoint).</summary>
    public static void SaveModel(string folder, Transformer model)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, ConfigFile), model.Config.ToJson());
        SafeTensors.Write(Path.Combine(folder, ModelFile), model.Parameters,
            new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Everything a run needs to continue: weights, config, optimizer moments and step, RNG state, and the caller's extra JSON.</summary>
    public static void Save(string folder, Transformer model, AdamW optimizer, Rng rng, JsonObject? extra = null)
    {
        SaveModel(folder, model);
        var moments = new List<(string, Tensor)>();
        foreach (var slot in optimizer.Slots)
        {
            moments.Add(("m." + slot.Name, new Tensor(slot.M, slot.Value.Shape)));
            moments.Add(("v." + slot.Name, new Tensor(slot.V, slot.Value.Shape)));
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
        File.WriteAllText(Path.Combine(folder, StateFile), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Reads config.json and model.safetensors from the folder.</summary>
    public static Transformer LoadModel(string folder)
    {
        string configPath = Path.Combine(folder, ConfigFile);
        if (!File.Exists(configPath)) throw new ModelFormatException($"{configPath}: file not found");
        var config = TransformerConfig.FromJson(File.ReadAllText(configPath), configPath);
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
        JsonObject state;
        try { state = JsonNode.Parse(File.ReadAllText(statePath)) as JsonObject ?? throw new ModelFormatException($"{statePath}: not a JSON object"); }
        catch (JsonException e) { throw new ModelFormatException($"{statePath}: not valid JSON ({e.Message})", e); }

        int step;
        ulong rngState;
        try
        {
            step = state["step"]?.GetValue<int>() ?? throw new ModelFormatException($"{statePath}: missing 'step'");
            string rngText = state["rng_state"]?.GetValue<string>() ?? throw new ModelFormatException($"{statePath}: missing 'rng_state'");
            rngState = ulong.Parse(rngText, CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException)
        {
            throw new ModelFormatException($"{statePath}: malformed step or rng_state ({e.Message})", e);
        }

        string optimizerPath = Path.Combine(folder, OptimizerFile);
        using (var reader = new SafeTensorsReader(optimizerPath))
            foreach (var slot in optimizer.Slots)
            {
                CopyChecked(reader, "m." + slot.Name, new Tensor(slot.M, slot.Value.Shape));
                CopyChecked(reader, "v." + slot.Name, new Tensor(slot.V, slot.Value.Shape));
            }
        optimizer.StepCount = step;
        rng.State = rngState;
        return state["extra"]?.DeepClone() as JsonObject;
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
        reader.Read(name).Data.CopyTo(target.Data, 0);
    }
}
