// A Hugging Face model folder, in and out: config.json + model.safetensors, or the sharded form
// model-00001-of-0000N.safetensors with model.safetensors.index.json ({"weight_map": {tensor: file}}).
//
// LlamaForCausalLM and Qwen2ForCausalLM name their tensors as our Transformer does
// (model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight, ...), so loading is a
// name-for-name copy, each shape checked against the one config.json implies. What the config
// carries is read by TransformerConfig.FromJson: grouped-query heads, rms_norm_eps, rope_theta (top
// level or under rope_parameters), QKV bias (Qwen2), tied embeddings (then the file has no
// lm_head.weight). BF16/F16 weights are widened to float32 by SafeTensorsReader.
// Saving writes what Checkpoint.SaveModel writes (a folder transformers loads), plus, when the model
// came from a folder, that folder's tokenizer and generation files and its special-token ids.
// Every failure is a ModelFormatException with one line naming the file and what is wrong.
// Tests: Grpo.Tests/Model/HfCheckpointTests.cs (fixtures made by transformers: Fixtures/make_hf_fixture.py).
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Grpo.Model;

public static class HfCheckpoint
{
    public const string IndexFile = "model.safetensors.index.json";
    /// <summary>Files beside the weights that describe tokens, not weights: copied along when a model is saved.</summary>
    public static readonly string[] TokenizerFiles =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja"];

    private const long MaxJsonBytes = 64L * 1024 * 1024;

    /// <summary>Loads config.json and the weights (one file or shards) of a Llama or Qwen2 folder.</summary>
    public static Transformer Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new ModelFormatException($"{folder}: model folder not found");
        string configPath = Path.Combine(folder, Checkpoint.ConfigFile);
        var config = TransformerConfig.FromJson(ReadBoundedText(configPath), configPath);

        string single = Path.Combine(folder, Checkpoint.ModelFile), index = Path.Combine(folder, IndexFile);
        if (File.Exists(single))
        {
            using (var reader = new SafeTensorsReader(single)) CheckSize(config, configPath, [reader]);
            var model = new Transformer(config, rng: null);
            Checkpoint.LoadWeights(single, model);
            return model;
        }
        if (File.Exists(index)) return LoadShards(folder, index, config, configPath);
        throw new ModelFormatException($"{folder}: no {Checkpoint.ModelFile} (nor {IndexFile} for a sharded model)");
    }

    /// <summary>Before the model is allocated: a config that needs more numbers than the files hold is
    /// wrong (or hostile), and must not allocate gigabytes to find out tensor by tensor.</summary>
    private static void CheckSize(TransformerConfig config, string configPath, IEnumerable<SafeTensorsReader> readers)
    {
        long stored = 0;
        foreach (var reader in readers)
            foreach (var entry in reader.Entries)
                stored += entry.Shape.Aggregate(1L, (product, d) => product * d);
        long needed;
        try { needed = config.ParameterCount(); }
        catch (OverflowException) { needed = long.MaxValue; }
        if (needed > stored)
            throw new ModelFormatException($"{configPath}: the config needs {needed} weights but the safetensors files hold {stored}");
    }

    /// <summary>Writes config.json + model.safetensors (F32). With <paramref name="sourceFolder"/> (the folder the
    /// model was loaded from), its tokenizer and generation files are copied and config.json keeps its token ids.</summary>
    public static void Save(string folder, Transformer model, string? sourceFolder = null)
    {
        Checkpoint.SaveModel(folder, model);
        if (sourceFolder is not null) CopyTokenizerFiles(sourceFolder, folder);
    }

    /// <summary>Copies the tokenizer and generation files of <paramref name="sourceFolder"/> into
    /// <paramref name="folder"/> (which already holds config.json) and its special-token ids into that config.json.</summary>
    public static void CopyTokenizerFiles(string sourceFolder, string folder)
    {
        if (Path.GetFullPath(sourceFolder) == Path.GetFullPath(folder)) return;
        foreach (string name in TokenizerFiles)
        {
            string from = Path.Combine(sourceFolder, name);
            if (File.Exists(from)) File.Copy(from, Path.Combine(folder, name), overwrite: true);
        }
        string sourceConfig = Path.Combine(sourceFolder, Checkpoint.ConfigFile);
        if (!File.Exists(sourceConfig)) return;
        var source = ParseObject(ReadBoundedText(sourceConfig), sourceConfig);
        string configPath = Path.Combine(folder, Checkpoint.ConfigFile);
        var written = ParseObject(File.ReadAllText(configPath), configPath);
        foreach (string key in new[] { "bos_token_id", "eos_token_id", "pad_token_id" })
            if (source[key] is { } value) written[key] = value.DeepClone();
        File.WriteAllText(configPath, written.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Reads a small JSON file whole, refusing one past <see cref="MaxJsonBytes"/> before reading it.</summary>
    internal static string ReadBoundedText(string path, long maxBytes = MaxJsonBytes)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new ModelFormatException($"{path}: file not found");
        if (info.Length > maxBytes) throw new ModelFormatException($"{path}: {info.Length} bytes is more than the {maxBytes}-byte limit");
        return File.ReadAllText(path);
    }

    internal static JsonObject ParseObject(string json, string source)
    {
        try { return JsonNode.Parse(json) as JsonObject ?? throw new ModelFormatException($"{source}: not a JSON object"); }
        catch (JsonException e) { throw new ModelFormatException($"{source}: not valid JSON ({e.Message})", e); }
    }

    private static Transformer LoadShards(string folder, string indexPath, TransformerConfig config, string configPath)
    {
        var weightMap = ParseObject(ReadBoundedText(indexPath), indexPath)["weight_map"] as JsonObject
            ?? throw new ModelFormatException($"{indexPath}: no 'weight_map' object");
        var fileOf = new Dictionary<string, string>();
        foreach (var (tensor, node) in weightMap)
        {
            string? file = node is JsonValue value && value.TryGetValue(out string? text) ? text : null;
            // A shard is a plain file name in the same folder: never a path that leads elsewhere.
            if (string.IsNullOrEmpty(file) || file != Path.GetFileName(file) || file is "." or "..")
                throw new ModelFormatException($"{indexPath}: tensor '{tensor}' maps to '{node?.ToJsonString()}', not a file name in the folder");
            fileOf[tensor] = file;
        }

        var readers = new Dictionary<string, SafeTensorsReader>();
        try
        {
            foreach (string file in fileOf.Values.Distinct())
                readers[file] = new SafeTensorsReader(Path.Combine(folder, file));
            CheckSize(config, configPath, readers.Values);
            var model = new Transformer(config, rng: null);
            var expected = model.Parameters.Select(p => p.Name).ToHashSet();
            foreach (var (file, reader) in readers)
                foreach (var entry in reader.Entries)
                    if (!expected.Contains(entry.Name) && !Checkpoint.IsHarmlessExtra(entry.Name, model.Config))
                        throw new ModelFormatException($"{reader.Path}: unexpected tensor '{entry.Name}' for this config");
            foreach (var (name, value) in model.Parameters)
            {
                if (!fileOf.TryGetValue(name, out string? file))
                    throw new ModelFormatException($"{indexPath}: no shard holds tensor '{name}'");
                Checkpoint.CopyChecked(readers[file], name, value);
            }
            return model;
        }
        finally
        {
            foreach (var reader in readers.Values) reader.Dispose();
        }
    }
}
