// Hugging Face folders in and out (Model/HfCheckpoint.cs, Model/ModelFolder.cs, Tasks/HfTokenizer.cs),
// checked against what transformers and tokenizers themselves computed.
//
// Fixtures/hf/{llama,qwen2}/ are made by Fixtures/make_hf_fixture.py on a machine with transformers 5:
// a tied-embedding Llama (GQA 4/2, float32, GPT-2-style byte-level BPE adding BOS) and a Qwen2 (QKV
// bias, GQA 4/1, bf16 weights, rope_theta 1e6 under rope_parameters, NFC + Qwen2 split regex, chat
// special tokens). expected.json holds the tokenizer's ids, greedy continuations with each token's
// log-prob (float64 reference) and one prompt's logits; ours must agree within 1e-4.
// Fixtures/hf/ours/{llama-tied,qwen2}/ are written by our code (OursFolders test with
// GRPO_WRITE_HF_OURS set) and were loaded in transformers by the same script, whose logits
// (transformers_logits.json) ours are checked against: the round trip out to transformers.
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Cli;
using Grpo.Model;
using Grpo.Sampling;
using Grpo.Tasks;
using Xunit.Abstractions;

namespace Grpo.Tests.Model;

public sealed class HfCheckpointTests(ITestOutputHelper output) : IDisposable
{
    private readonly string temp = Directory.CreateTempSubdirectory("grpo-hf-").FullName;

    public void Dispose() => Directory.Delete(temp, recursive: true);

    public static TheoryData<string> Fixtures => new() { "llama", "qwen2" };

    private static string FixtureRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "Grpo.Tests", "Fixtures", "hf");
            if (File.Exists(Path.Combine(candidate, "llama", "expected.json"))) return candidate;
        }
        throw new InvalidOperationException("Grpo.Tests/Fixtures/hf missing: run Grpo.Tests/Fixtures/make_hf_fixture.py (transformers, tokenizers)");
    }

    private static string Fixture(string name) => Path.Combine(FixtureRoot(), name);

    private static JsonObject Expected(string name) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture(name), "expected.json")))!.AsObject();

    private static int[] Ints(JsonNode? node) => node!.AsArray().Select(x => x!.GetValue<int>()).ToArray();

    private static float[] Logits(Transformer model, int[] tokens)
    {
        using (Autograd.NoGrad()) return model.Forward(tokens, 1, tokens.Length).Data;
    }

    /// <summary>max |ours - theirs| / max |theirs| over a (T, V) JSON array of rows.</summary>
    private double RelativeDifference(string what, float[] ours, JsonArray theirs)
    {
        var reference = theirs.SelectMany(row => row!.AsArray().Select(x => x!.GetValue<double>())).ToArray();
        Assert.Equal(reference.Length, ours.Length);
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - reference[i]));
            maxRef = Math.Max(maxRef, Math.Abs(reference[i]));
        }
        double relative = maxDiff / maxRef;
        output.WriteLine($"{what}: {ours.Length} logits, max abs diff {maxDiff:E3}, relative to max |logit| {maxRef:F3}: {relative:E3} {(relative <= 1e-4 ? "OK" : "NOT OK")}");
        return relative;
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void TokenizerReproducesTheTokenizersLibrary(string name)
    {
        var tokenizer = HfTokenizer.Load(Fixture(name));
        var expected = Expected(name);
        Assert.Equal(expected["eos"]!.GetValue<int>(), tokenizer.Eos);
        foreach (var item in expected["texts"]!.AsArray())
        {
            string text = item!["text"]!.GetValue<string>();
            int[] ids = Ints(item["ids"]), withSpecial = Ints(item["ids_with_special"]);
            output.WriteLine($"{name}: {JsonSerializer.Serialize(text)} -> {ids.Length} tokens");
            Assert.Equal(ids, tokenizer.Encode(text));
            Assert.Equal(withSpecial, tokenizer.Encode(text, addBos: true));
            Assert.Equal(item["decoded"]!.GetValue<string>(), tokenizer.Decode(ids));
        }
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void GreedyContinuationsAndLogProbsMatchTransformers(string name)
    {
        var (model, tokenizer) = ModelFolder.Load(Fixture(name));
        Assert.NotNull(tokenizer);
        var expected = Expected(name);
        Assert.Equal(expected["architecture"]!.GetValue<string>() == "Qwen2ForCausalLM", model.Config.QkvBias);
        double worst = 0;
        foreach (var run in expected["greedy"]!.AsArray())
        {
            var prompt = Ints(run!["prompt_ids"]);
            Assert.Equal(prompt, tokenizer!.Encode(run["prompt"]!.GetValue<string>(), addBos: true));
            var tokens = new List<int>(prompt);
            var chosen = new List<int>();
            var logProbs = new List<double>();
            for (int step = 0; step < Ints(run["tokens"]).Length; step++)
            {
                var logits = Logits(model, [.. tokens]).AsSpan((tokens.Count - 1) * model.Config.VocabSize, model.Config.VocabSize);
                int best = 0;
                for (int v = 1; v < logits.Length; v++) if (logits[v] > logits[best]) best = v;
                double max = logits[best], sum = 0;
                foreach (float l in logits) sum += Math.Exp(l - max);
                chosen.Add(best);
                logProbs.Add(-Math.Log(sum));
                tokens.Add(best);
            }
            var expectedLogProbs = run["log_probs"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
            output.WriteLine($"{name}: prompt [{string.Join(",", prompt)}] -> [{string.Join(",", chosen)}], expected [{string.Join(",", Ints(run["tokens"]))}]");
            Assert.Equal(Ints(run["tokens"]), chosen);
            for (int i = 0; i < chosen.Count; i++)
            {
                worst = Math.Max(worst, Math.Abs(logProbs[i] - expectedLogProbs[i]));
                Assert.True(Math.Abs(logProbs[i] - expectedLogProbs[i]) < 1e-4, $"step {i}: log-prob {logProbs[i]} vs {expectedLogProbs[i]}");
            }
        }
        output.WriteLine($"{name}: largest log-prob difference {worst:E3}");
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void LogitsMatchTransformers(string name)
    {
        var model = HfCheckpoint.Load(Fixture(name));
        var prompt = Expected(name)["logits_prompt"]!;
        Assert.True(RelativeDifference(name, Logits(model, Ints(prompt["tokens"])), prompt["logits"]!.AsArray()) <= 1e-4);
    }

    [Fact]
    public void SavedFolderLoadsBackWithIdenticalLogitsAndKeepsTheTokenizer()
    {
        string source = Fixture("qwen2");
        var model = HfCheckpoint.Load(source);
        string saved = Path.Combine(temp, "saved");
        HfCheckpoint.Save(saved, model, sourceFolder: source);
        var (reloaded, tokenizer) = ModelFolder.Load(saved);
        int[] tokens = [5, 17, 42, 99, 3, 250];
        Assert.Equal(Logits(model, tokens), Logits(reloaded, tokens));
        Assert.Equal(HfTokenizer.Load(source).Eos, tokenizer!.Eos);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(saved, "config.json")))!;
        Assert.Equal("Qwen2ForCausalLM", config["architectures"]![0]!.GetValue<string>());
        Assert.NotNull(config["eos_token_id"]);
    }

    [Fact]
    public void TransformersShardedFolderLoadsLikeTheSingleFile()
    {
        // Fixtures/hf/llama-sharded: the llama fixture saved by transformers with max_shard_size 60KB.
        int[] tokens = [0, 2, 3, 40, 300, 479];
        string sharded = Fixture("llama-sharded");
        Assert.True(File.Exists(Path.Combine(sharded, HfCheckpoint.IndexFile)));
        Assert.Equal(Logits(HfCheckpoint.Load(Fixture("llama")), tokens), Logits(HfCheckpoint.Load(sharded), tokens));
    }

    [Fact]
    public void ShardedFolderLoadsLikeTheSingleFile()
    {
        var model = HfCheckpoint.Load(Fixture("llama"));
        string sharded = Path.Combine(temp, "sharded");
        Directory.CreateDirectory(sharded);
        File.Copy(Path.Combine(Fixture("llama"), "config.json"), Path.Combine(sharded, "config.json"));
        var parameters = model.Parameters;
        int half = parameters.Count / 2;
        string[] files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
        SafeTensors.Write(Path.Combine(sharded, files[0]), parameters.Take(half));
        SafeTensors.Write(Path.Combine(sharded, files[1]), parameters.Skip(half));
        var weightMap = new JsonObject();
        for (int i = 0; i < parameters.Count; i++) weightMap[parameters[i].Name] = files[i < half ? 0 : 1];
        File.WriteAllText(Path.Combine(sharded, HfCheckpoint.IndexFile), new JsonObject { ["weight_map"] = weightMap }.ToJsonString());

        int[] tokens = [1, 2, 3, 40, 300];
        Assert.Equal(Logits(model, tokens), Logits(HfCheckpoint.Load(sharded), tokens));

        File.Delete(Path.Combine(sharded, files[1]));
        AssertOneLineError(() => HfCheckpoint.Load(sharded), "model-00002-of-00002.safetensors: file not found");
    }

    [Fact]
    public void RopeThetaIsReadAtTheTopLevelOrUnderRopeParameters()
    {
        const string common = "\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 8, \"hidden_size\": 8, "
            + "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 8, \"max_position_embeddings\": 16";
        Assert.Equal(500000f, TransformerConfig.FromJson($"{{{common}, \"rope_theta\": 500000.0}}").RopeTheta);
        Assert.Equal(250000f, TransformerConfig.FromJson($"{{{common}, \"rope_parameters\": {{\"rope_type\": \"default\", \"rope_theta\": 250000.0}}}}").RopeTheta);
        AssertOneLineError(() => TransformerConfig.FromJson($"{{{common}, \"rope_parameters\": {{\"rope_type\": \"llama3\", \"rope_theta\": 5e5}}}}"),
            "rope_parameters of type 'llama3' is not supported");
    }

    /// <summary>A copy of a fixture folder to break.</summary>
    private string Copy(string name)
    {
        string copy = Path.Combine(temp, $"{name}-copy-{Directory.GetDirectories(temp).Length}");
        Directory.CreateDirectory(copy);
        foreach (string file in Directory.GetFiles(Fixture(name))) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        return copy;
    }

    private static void EditConfig(string folder, Action<JsonObject> edit)
    {
        string path = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(config);
        File.WriteAllText(path, config.ToJsonString());
    }

    private void AssertOneLineError(Action action, string expectedPart)
    {
        var e = Assert.ThrowsAny<Exception>(action);
        output.WriteLine($"{e.GetType().Name}: {e.Message}");
        Assert.True(e is ModelFormatException or TokenizerFormatException or ArgumentOutOfRangeException, e.ToString());
        Assert.Contains(expectedPart, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void BadFoldersGiveOneLineErrors()
    {
        string unknown = Copy("llama");
        EditConfig(unknown, c => c["architectures"] = new JsonArray("GPT2LMHeadModel"));
        AssertOneLineError(() => ModelFolder.Load(unknown), "architectures [\"GPT2LMHeadModel\"] is not LlamaForCausalLM");

        string missing = Copy("qwen2");
        File.Delete(Path.Combine(missing, "model.safetensors"));
        AssertOneLineError(() => ModelFolder.Load(missing), "no model.safetensors");

        string noConfig = Copy("qwen2");
        File.Delete(Path.Combine(noConfig, "config.json"));
        AssertOneLineError(() => ModelFolder.Load(noConfig), "config.json: file not found");

        // intermediate_size 64 in the file; a config saying 48 disagrees with gate_proj's stored shape.
        string shape = Copy("llama");
        EditConfig(shape, c => c["intermediate_size"] = 48);
        AssertOneLineError(() => ModelFolder.Load(shape), "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [64, 32], the config needs [48, 32]");

        // A config far larger than its weights is refused before anything is allocated for it.
        string huge = Copy("llama");
        // (Each matrix fits in an array, so the size check against the files is what refuses it.)
        EditConfig(huge, c => { c["hidden_size"] = 1 << 14; c["vocab_size"] = 1 << 14; c["head_dim"] = (1 << 14) / 4; });
        AssertOneLineError(() => ModelFolder.Load(huge), "weights but the safetensors files hold");

        string truncated = Copy("llama");
        string weights = Path.Combine(truncated, "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes[..(bytes.Length / 2)]);
        AssertOneLineError(() => ModelFolder.Load(truncated), "fall outside the data section");

        string badTokenizer = Copy("qwen2");
        string tokenizerPath = Path.Combine(badTokenizer, "tokenizer.json");
        File.WriteAllText(tokenizerPath, File.ReadAllText(tokenizerPath)[..500]);
        AssertOneLineError(() => ModelFolder.Load(badTokenizer), "tokenizer.json");

        AssertOneLineError(() => ModelFolder.Load(Path.Combine(temp, "nowhere")), "model folder not found");
    }

    /// <summary>Seeded mutations of the qwen2 fixture's tokenizer.json and config.json (a byte changed,
    /// inserted or deleted, or the file cut short): each loads or fails with ModelFormatException, never anything else.</summary>
    [Theory]
    [InlineData("tokenizer.json", 300)]
    [InlineData("config.json", 300)]
    public void MutatedFilesLoadOrFailWithOneLine(string file, int mutations)
    {
        string folder = Copy("qwen2");
        string path = Path.Combine(folder, file);
        byte[] original = File.ReadAllBytes(path);
        var rng = new Rng(5);
        int failures = 0;
        for (int trial = 0; trial < mutations; trial++)
        {
            var bytes = new List<byte>(original);
            const string jsonish = "{}[]\",:0-9ae \n";
            for (int edits = 1 + rng.NextInt(3); edits > 0 && bytes.Count > 0; edits--)
            {
                int at = rng.NextInt(bytes.Count);
                switch (rng.NextInt(4))
                {
                    case 0: bytes[at] = (byte)rng.NextInt(256); break;
                    case 1: bytes.Insert(at, (byte)jsonish[rng.NextInt(jsonish.Length)]); break;
                    case 2: bytes.RemoveAt(at); break;
                    default: bytes.RemoveRange(at, bytes.Count - at); break;
                }
            }
            File.WriteAllBytes(path, [.. bytes]);
            try
            {
                if (file == "config.json") HfCheckpoint.Load(folder);
                else ModelFolder.LoadTokenizer(folder)?.Encode("Natalia sold 48 clips <|im_end|>");
            }
            catch (ModelFormatException e)
            {
                Assert.DoesNotContain('\n', e.Message);
                failures++;
            }
        }
        output.WriteLine($"{file}: {mutations} mutations, {failures} refused with ModelFormatException, the rest loaded");
    }

    [Fact]
    public void TokenIdsOutsideTheVocabularyAreRefused()
    {
        var (model, tokenizer) = ModelFolder.Load(Fixture("llama"));
        AssertOneLineError(() => tokenizer!.Decode([5, tokenizer.VocabSize]), $"token {tokenizer!.VocabSize} is outside the vocabulary");
        AssertOneLineError(() => tokenizer.Decode([-1]), "token -1 is outside the vocabulary");
        Assert.ThrowsAny<ArgumentException>(() => model.Forward([1, model.Config.VocabSize], 1, 2));
    }

    [Fact]
    public void TokenizeCommandPrintsTheIds()
    {
        var item = Expected("qwen2")["texts"]![0]!;
        var stdout = new StringWriter();
        Assert.Equal(0, TokenizeCommand.Run(Fixture("qwen2"), item["text"]!.GetValue<string>(), false, json: true, stdout, TextWriter.Null));
        Assert.Equal(Ints(item["ids"]), Ints(JsonNode.Parse(stdout.ToString())!["ids"]));

        var stderr = new StringWriter();
        Assert.Equal(1, TokenizeCommand.Run(Path.Combine(temp, "nowhere"), "x", false, json: true, TextWriter.Null, stderr));
        Assert.StartsWith("error: ", stderr.ToString());
        Assert.Single(stderr.ToString().TrimEnd().Split('\n'));
    }

    /// <summary>The two folders our code writes for transformers to read (make_hf_fixture.py --ours):
    /// random weights, every norm and bias perturbed, and our logits for a fixed prompt.</summary>
    private static IEnumerable<(string Name, Transformer Model)> OurModels()
    {
        var configs = new[]
        {
            ("llama-tied", new TransformerConfig(VocabSize: 40, Dim: 32, Layers: 2, Heads: 4, KvHeads: 2, FfnDim: 48, MaxSeqLen: 64,
                RopeTheta: 500000f, NormEps: 1e-5f, TiedEmbeddings: true)),
            ("qwen2", new TransformerConfig(VocabSize: 48, Dim: 32, Layers: 2, Heads: 4, KvHeads: 1, FfnDim: 48, MaxSeqLen: 64,
                RopeTheta: 1000000f, NormEps: 1e-6f, QkvBias: true)),
        };
        foreach (var (name, config) in configs)
        {
            var model = new Transformer(config, seed: 21);
            var rng = new Rng(22);
            foreach (var (parameter, value) in model.Parameters)
                for (int i = 0; i < value.Data.Length; i++)
                    value.Data[i] = parameter.EndsWith("norm.weight") ? 1 + 0.2f * rng.NextGaussian()
                        : value.Rank == 1 ? 0.1f * rng.NextGaussian() : 0.15f * rng.NextGaussian();
            yield return (name, model);
        }
    }

    private static readonly int[] OurPrompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 35];

    [Fact]
    public void OurSavedFoldersGiveTransformersOurLogits()
    {
        string? writeTo = Environment.GetEnvironmentVariable("GRPO_WRITE_HF_OURS");
        foreach (var (name, model) in OurModels())
        {
            var logits = Logits(model, OurPrompt);
            var rows = new JsonArray(Enumerable.Range(0, OurPrompt.Length)
                .Select(t => (JsonNode)new JsonArray(logits.AsSpan(t * model.Config.VocabSize, model.Config.VocabSize).ToArray().Select(x => (JsonNode)x).ToArray())).ToArray());
            if (writeTo != null)
            {
                string folder = Path.Combine(writeTo, name);
                HfCheckpoint.Save(folder, model);
                File.WriteAllText(Path.Combine(folder, "our_logits.json"), new JsonObject { ["tokens"] = new JsonArray(OurPrompt.Select(t => (JsonNode)t).ToArray()), ["logits"] = rows }.ToJsonString());
                continue;
            }
            string saved = Path.Combine(FixtureRoot(), "ours", name);
            var reloaded = HfCheckpoint.Load(saved);
            Assert.Equal(logits, Logits(reloaded, OurPrompt));
            var theirs = JsonNode.Parse(File.ReadAllText(Path.Combine(saved, "transformers_logits.json")))!;
            Assert.Equal(OurPrompt, Ints(theirs["tokens"]));
            Assert.True(RelativeDifference($"ours/{name} in transformers", logits, theirs["logits"]!.AsArray()) <= 1e-4);
        }
    }
}
