// Fuzz tests: every parser of a user-facing file is fed 10,000 seeded mutations of a valid file
// (Mutator.cs) and must either read it or refuse it with our one-line error type
// (ModelFormatException for model, checkpoint and tokenizer files, TaskDataException for task data). Any other
// exception (IndexOutOfRange, NullReference, Overflow, OutOfMemory, KeyNotFound, ...) fails the
// test, which lists each distinct crash with the seed, the iteration and the mutations that built
// the input. Inputs are mutated in memory and parsed from a MemoryStream or string (checkpoint files
// from one reused temporary folder), so each parser's 10,000 run in a few seconds on two cores.
// Figures (parsed / refused / seconds) go to the test output.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Grpo.Model;
using Grpo.Optim;
using Grpo.Sampling;
using Grpo.Tasks;
using Xunit.Abstractions;

namespace Grpo.Tests.Reliability;

public sealed class FuzzTests(ITestOutputHelper output) : IDisposable
{
    private const int Mutations = 10_000;
    private const int TimeoutMs = 120_000;

    private readonly string folder = Directory.CreateTempSubdirectory("grpo-fuzz-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private delegate byte[] Mutation(Rng rng, byte[] valid, List<string> applied);

    /// <summary>Parses the valid input, then <see cref="Mutations"/> mutations of it; fails listing every distinct unexpected exception.</summary>
    private void Fuzz(string what, byte[] valid, ulong seed, Mutation mutate, Action<byte[]> parse, Type ourError)
    {
        parse(valid);
        var rng = new Rng(seed);
        var clock = Stopwatch.StartNew();
        int parsed = 0, refused = 0;
        var crashes = new Dictionary<string, string>();
        for (int i = 0; i < Mutations; i++)
        {
            var applied = new List<string>();
            byte[] input = mutate(rng, valid, applied);
            try
            {
                parse(input);
                parsed++;
            }
            catch (Exception e) when (e.GetType() == ourError && !e.Message.Contains('\n'))
            {
                refused++;
            }
            catch (Exception e)
            {
                // One report per exception type and throwing method, with the first input that caused it.
                string site = $"{e.GetType().Name} at {e.TargetSite?.DeclaringType?.Name}.{e.TargetSite?.Name}";
                crashes.TryAdd(site, $"{site}: iteration {i} of seed {seed} [{string.Join("; ", applied)}]: {e.Message.ReplaceLineEndings(" ")}");
            }
        }
        output.WriteLine($"{what}: {Mutations} mutations in {clock.Elapsed.TotalSeconds:F1} s: {parsed} parsed, {refused} refused with {ourError.Name}, {crashes.Count} kinds of other exception");
        Assert.True(crashes.Count == 0, $"{what}: unexpected exceptions:\n{string.Join("\n", crashes.Values)}");
    }

    [Fact(Timeout = TimeoutMs)]
    public Task SafeTensorsReaderRefusesOnlyWithModelFormatException() => Task.Run(() =>
    {
        // F32 [2, 3], F16 [4], BF16 [2, 2] and metadata: every dtype path and the metadata path.
        string header = """{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},"c":{"dtype":"BF16","shape":[2,2],"data_offsets":[32,40]}}""";
        var data = new byte[40];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(i * 37 + 11);
        byte[] valid = SafeTensorsBytes(header, data);

        Fuzz("safetensors", valid, seed: 1, Mutator.MutateSafeTensors, bytes =>
        {
            using var reader = new SafeTensorsReader(new MemoryStream(bytes, writable: false), "fuzz.safetensors");
            foreach (var entry in reader.Entries) reader.Read(entry.Name);
        }, typeof(ModelFormatException));
    });

    [Fact(Timeout = TimeoutMs)]
    public Task ConfigJsonRefusesOnlyWithModelFormatException() => Task.Run(() =>
    {
        var json = JsonNode.Parse(TransformerConfig.Tiny.ToJson())!.AsObject();
        json["head_dim"] = TransformerConfig.Tiny.HeadDim;   // reaches the head_dim and rope_scaling checks too
        json["rope_scaling"] = null;
        byte[] valid = Encoding.UTF8.GetBytes(json.ToJsonString());

        Fuzz("config.json", valid, seed: 2, Mutator.Mutate,
            bytes => TransformerConfig.FromJson(Encoding.UTF8.GetString(bytes), "config.json"), typeof(ModelFormatException));
    });

    [Fact(Timeout = TimeoutMs)]
    public Task Gsm8kJsonlRefusesOnlyWithTaskDataException() => Task.Run(() =>
    {
        byte[] valid = Encoding.UTF8.GetBytes(
            """
            {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?", "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"}
            {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?", "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"}

            {"question": "A farm sold 1,600 eggs.", "answer": "1,600 eggs\n#### 1,600", "extra": [1, {"a": null}]}
            {"question": "How much?", "answer": "It costs $0.50.\n#### 0.5"}

            """.ReplaceLineEndings("\n"));

        Fuzz("GSM8K JSONL", valid, seed: 3, Mutator.Mutate,
            bytes => Gsm8k.Parse(new StringReader(Encoding.UTF8.GetString(bytes)), "fuzz.jsonl"), typeof(TaskDataException));
    });

    [Fact(Timeout = TimeoutMs)]
    public Task CheckpointManifestRefusesOnlyWithModelFormatException() => Task.Run(() =>
    {
        string checkpoint = SaveTinyCheckpoint();
        string manifestPath = Path.Combine(checkpoint, CheckpointStore.ManifestFile);
        byte[] valid = File.ReadAllBytes(manifestPath);

        // Parsed in memory; a manifest that parses is also written and verified against the files
        // (the slow part, on disk), so the size, checksum and file-name checks see tampered values too.
        Fuzz("manifest.json", valid, seed: 4, Mutator.Mutate, bytes =>
        {
            CheckpointStore.ParseManifest(Encoding.UTF8.GetString(bytes));
            File.WriteAllBytes(manifestPath, bytes);
            CheckpointStore.Verify(checkpoint);
        }, typeof(ModelFormatException));
    });

    [Fact(Timeout = TimeoutMs)]
    public Task TrainerStateRefusesOnlyWithModelFormatException() => Task.Run(() =>
    {
        string checkpoint = SaveTinyCheckpoint();
        byte[] valid = File.ReadAllBytes(Path.Combine(checkpoint, Checkpoint.StateFile));

        Fuzz("trainer_state.json", valid, seed: 5, Mutator.Mutate,
            bytes => Checkpoint.ParseTrainingState(Encoding.UTF8.GetString(bytes), "trainer_state.json"), typeof(ModelFormatException));
    });

    [Fact(Timeout = TimeoutMs)]
    public Task TokenizerJsonRefusesOnlyWithModelFormatException() => Task.Run(() =>
    {
        // The Llama fixture's byte-level BPE (480 tokens, 222 merges, two special tokens), through the
        // entry every command uses (ModelFolder.LoadTokenizer: TokenizerJson, Microsoft.ML.Tokenizers'
        // BPE, the special tokens of tokenizer_config.json); a file that loads must also encode and decode.
        string fixture = LlamaFixture();
        foreach (var name in new[] { "tokenizer_config.json", "config.json" }) File.Copy(Path.Combine(fixture, name), Path.Combine(folder, name), overwrite: true);
        byte[] valid = File.ReadAllBytes(Path.Combine(fixture, HfTokenizer.TokenizerFile));
        string path = Path.Combine(folder, HfTokenizer.TokenizerFile);

        Fuzz("tokenizer.json", valid, seed: 6, Mutator.Mutate, bytes =>
        {
            File.WriteAllBytes(path, bytes);
            var tokenizer = ModelFolder.LoadTokenizer(folder)!;
            tokenizer.Decode(tokenizer.Encode("Natalia sold 48 clips in April, <|end_of_text|> and half as many in May.", addBos: true));
        }, typeof(ModelFormatException));
    });

    /// <summary>Grpo.Tests/Fixtures/hf/llama, found upward from the test assembly (as HfCheckpointTests finds it).</summary>
    private static string LlamaFixture()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "Grpo.Tests", "Fixtures", "hf", "llama");
            if (File.Exists(Path.Combine(candidate, HfTokenizer.TokenizerFile))) return candidate;
        }
        throw new InvalidOperationException("Grpo.Tests/Fixtures/hf/llama missing");
    }

    private string SaveTinyCheckpoint()
    {
        var model = new Transformer(TransformerConfig.Tiny, 3);
        var optimizer = new AdamW(model.Parameters);
        return CheckpointStore.Save(folder, 7, model, optimizer, new Rng(11), new JsonObject { ["epoch"] = 1 });
    }

    internal static byte[] SafeTensorsBytes(string header, byte[] data)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + json.Length);
        return bytes;
    }
}
