// Bad inputs a user can hand the program, each refused with a one-line message that names the file
// (and the tensor or field) and says what is wrong, never a stack trace or an out-of-memory. The CLI
// prints these messages as `error: ...`. Malformed JSONL (line numbers, missing fields, empty files)
// is checked in Grpo.Tests/Tasks/Gsm8kTests.cs; safetensors entry checks in Model/SafeTensorsTests.cs.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Grpo.Model;
using Grpo.Optim;
using Grpo.Sampling;

namespace Grpo.Tests.Reliability;

public sealed class BadInputTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("grpo-bad-input-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string ModelFile => Path.Combine(folder, Checkpoint.ModelFile);
    private string ConfigFile => Path.Combine(folder, Checkpoint.ConfigFile);

    private static readonly TransformerConfig Config = TransformerConfig.Tiny;

    private void SaveTinyModel() => Checkpoint.SaveModel(folder, new Transformer(Config, 1));

    private ModelFormatException LoadFails()
    {
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.LoadModel(folder));
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    private void EditConfig(Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(File.ReadAllText(ConfigFile))!.AsObject();
        edit(json);
        File.WriteAllText(ConfigFile, json.ToJsonString());
    }

    [Fact]
    public void MissingModelSafetensors()
    {
        SaveTinyModel();
        File.Delete(ModelFile);
        Assert.Equal($"{ModelFile}: file not found", LoadFails().Message);
    }

    [Fact]
    public void MissingConfigJson()
    {
        SaveTinyModel();
        File.Delete(ConfigFile);
        Assert.Equal($"{ConfigFile}: file not found", LoadFails().Message);
    }

    [Fact]
    public void TruncatedSafetensors()
    {
        // Half the file: the header is whole, but the tensors at the end point past the data.
        SaveTinyModel();
        using (var stream = new FileStream(ModelFile, FileMode.Open)) stream.SetLength(stream.Length / 2);
        var message = LoadFails().Message;
        Assert.StartsWith($"{ModelFile}: tensor '", message);
        Assert.Contains("fall outside the data section", message);
    }

    [Fact]
    public void HeaderLargerThanTheFile()
    {
        SaveTinyModel();
        var bytes = File.ReadAllBytes(ModelFile);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)bytes.Length);
        File.WriteAllBytes(ModelFile, bytes);
        Assert.Equal($"{ModelFile}: header claims {bytes.Length} bytes but the file has only {bytes.Length - 8} after the length (truncated or not safetensors)",
            LoadFails().Message);
    }

    [Fact]
    public void ShapesThatDisagreeWithConfigJson()
    {
        // intermediate_size 48 in config.json: gate_proj should be (48, 16); the file holds (32, 16).
        SaveTinyModel();
        EditConfig(json => json["intermediate_size"] = 48);
        Assert.Equal($"{ModelFile}: tensor 'model.layers.0.mlp.gate_proj.weight' has shape [32, 16], the config needs [48, 16]", LoadFails().Message);
    }

    [Fact]
    public void UnknownDtype()
    {
        // The first "F32" of the header becomes "F64": same length, so the header still parses.
        SaveTinyModel();
        var bytes = File.ReadAllBytes(ModelFile);
        int at = bytes.AsSpan().IndexOf("\"F32\""u8);
        "\"F64\""u8.CopyTo(bytes.AsSpan(at));
        File.WriteAllBytes(ModelFile, bytes);
        var message = LoadFails().Message;
        Assert.StartsWith($"{ModelFile}: tensor 'model.embed_tokens.weight': unsupported dtype 'F64'", message);
    }

    [Fact]
    public void UnknownModelType()
    {
        SaveTinyModel();
        EditConfig(json => { json["model_type"] = "gpt2"; json["architectures"] = new JsonArray("GPT2LMHeadModel"); });
        Assert.Equal($"{ConfigFile}: model_type 'gpt2' is not llama or qwen2", LoadFails().Message);
    }

    [Fact]
    public void UnknownArchitecture()
    {
        SaveTinyModel();
        EditConfig(json => json["architectures"] = new JsonArray("LlamaForSequenceClassification"));
        Assert.Equal($"{ConfigFile}: architectures [\"LlamaForSequenceClassification\"] is not LlamaForCausalLM or Qwen2ForCausalLM", LoadFails().Message);
    }

    [Fact]
    public void ConfigJsonTooLargeIsRefusedBeforeReading()
    {
        SaveTinyModel();
        File.WriteAllBytes(ConfigFile, new byte[TransformerConfig.MaxJsonBytes + 1]);
        Assert.Equal($"{ConfigFile}: {TransformerConfig.MaxJsonBytes + 1} bytes is more than the {TransformerConfig.MaxJsonBytes}-byte limit for this file", LoadFails().Message);
    }

    [Fact]
    public void ConfigFarLargerThanTheWeightsIsRefusedBeforeAllocating()
    {
        // vocab_size 1,000,000: about 32M parameters (two 1,000,000 x 16 tables and the layers), 64 MB
        // even as 16-bit floats; the Tiny file has about 45 KB. Refused before the model is built.
        SaveTinyModel();
        EditConfig(json => json["vocab_size"] = 1_000_000);
        long parameters = (Config with { VocabSize = 1_000_000 }).ParameterCount();
        Assert.Equal($"{ModelFile}: the config needs {parameters} parameters (2 bytes each even as 16-bit floats) but the file has {new FileInfo(ModelFile).Length} bytes",
            LoadFails().Message);
    }

    [Fact]
    public void ConfigWithZeroHeadsIsAnErrorNotADivisionByZero()
    {
        var json = JsonNode.Parse(Config.ToJson())!.AsObject();
        json["num_attention_heads"] = 0;
        json["head_dim"] = 4;
        var e = Assert.Throws<ModelFormatException>(() => TransformerConfig.FromJson(json.ToJsonString()));
        Assert.StartsWith("config.json: config sizes must be positive: vocab_size 32, hidden_size 16, layers 2, heads 0", e.Message);
    }

    [Fact]
    public void CheckpointWithACorruptedByteFailsVerificationAndIsSkipped()
    {
        var model = new Transformer(Config, 1);
        var optimizer = new AdamW(model.Parameters);
        CheckpointStore.Save(folder, 1, model, optimizer, new Rng(1));
        string newest = CheckpointStore.Save(folder, 2, model, optimizer, new Rng(1));

        // One byte in the middle of the AdamW moments: the size is right, the checksum is not.
        string moments = Path.Combine(newest, Checkpoint.OptimizerFile);
        var bytes = File.ReadAllBytes(moments);
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(moments, bytes);

        var e = Assert.Throws<ModelFormatException>(() => CheckpointStore.Verify(newest));
        Assert.Equal($"{newest}: optimizer.safetensors does not match its SHA-256 in the manifest (the file was changed or damaged)", e.Message);
        var found = CheckpointStore.Newest(folder);
        Assert.Equal(1, found.Step);
        Assert.Equal("step-000002: optimizer.safetensors does not match its SHA-256 in the manifest (the file was changed or damaged)", Assert.Single(found.Skipped));
        Assert.Throws<ModelFormatException>(() => CheckpointStore.Load(newest, model, optimizer, new Rng(1)));
    }

    [Fact]
    public void NaNWeightIsRefusedBySaveBeforeAnythingIsWritten()
    {
        var model = new Transformer(Config, 1);
        var optimizer = new AdamW(model.Parameters);
        model.Parameters[3].Value.Data[5] = float.NaN;
        var e = Assert.Throws<InvalidOperationException>(() => CheckpointStore.Save(folder, 7, model, optimizer, new Rng(1)));
        Assert.Equal($"not saving the checkpoint of step 7: weight '{model.Parameters[3].Name}' holds NaN at index 5 (NaN and infinity never reach a checkpoint)", e.Message);
        Assert.False(Directory.Exists(Path.Combine(folder, CheckpointStore.CheckpointsFolder)));
    }

    [Fact]
    public void InfiniteOptimizerMomentIsRefusedBySave()
    {
        var model = new Transformer(Config, 1);
        var optimizer = new AdamW(model.Parameters);
        optimizer.Slots[0].V.Data[2] = float.PositiveInfinity;
        var e = Assert.Throws<InvalidOperationException>(() => CheckpointStore.Save(folder, 7, model, optimizer, new Rng(1)));
        Assert.Equal("not saving the checkpoint of step 7: AdamW's second moment of 'model.embed_tokens.weight' holds +infinity at index 2 (NaN and infinity never reach a checkpoint)", e.Message);
    }

    [Fact]
    public void TamperedManifestCannotPointOutsideItsFolder()
    {
        var model = new Transformer(Config, 1);
        string path = CheckpointStore.Save(folder, 1, model, new AdamW(model.Parameters), new Rng(1));
        string manifest = Path.Combine(path, CheckpointStore.ManifestFile);
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"config.json\"", "\"../../config.json\""));
        var e = Assert.Throws<ModelFormatException>(() => CheckpointStore.Verify(path));
        Assert.Equal($"{path}: manifest.json lists '../../config.json', which is not a file name", e.Message);
    }

    [Fact]
    public void SafeTensorsWithARepeatedTensorName()
    {
        // Found by the fuzz test: JsonNode reported the repeated name as an ArgumentException.
        var bytes = FuzzTests.SafeTensorsBytes("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", new byte[4]);
        var e = Assert.Throws<ModelFormatException>(() => new SafeTensorsReader(new MemoryStream(bytes), "repeat.safetensors"));
        Assert.StartsWith("repeat.safetensors: header is malformed (An item with the same key has already been added. Key: w", e.Message);
    }

    [Fact]
    public void SafeTensorsWithInvalidUtf8InTheHeader()
    {
        // Found by the fuzz test: a tensor name that is not UTF-8 surfaced as an InvalidOperationException.
        var header = Encoding.UTF8.GetBytes("""{"w\u00e9":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""");
        int at = Array.IndexOf(header, (byte)0xC3);
        header[at + 1] = 0x28;   // C3 28 is not UTF-8
        var bytes = new byte[8 + header.Length + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        var e = Assert.Throws<ModelFormatException>(() => new SafeTensorsReader(new MemoryStream(bytes), "utf8.safetensors"));
        Assert.StartsWith("utf8.safetensors: header is", e.Message);
    }
}
