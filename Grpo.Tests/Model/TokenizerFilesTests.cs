// Checkpoints carry their tokenizer (Model/TokenizerFiles.cs): a CharTokenizer round-trips through
// char_tokenizer.json, an HfTokenizer's files are copied from its folder, the shipped warm start's
// alphabet is read from trainer_state.json, and a malformed file is one ModelFormatException line.
using Grpo.Model;
using Grpo.Optim;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Tests.Model;

public sealed class TokenizerFilesTests : IDisposable
{
    private readonly string temp = Directory.CreateTempSubdirectory("grpo-tokfiles-").FullName;

    public void Dispose() => Directory.Delete(temp, recursive: true);

    internal static string HfFixture(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "Grpo.Tests", "Fixtures", "hf", name);
            if (File.Exists(Path.Combine(candidate, "tokenizer.json"))) return candidate;
        }
        throw new InvalidOperationException($"Grpo.Tests/Fixtures/hf/{name} missing: run Grpo.Tests/Fixtures/make_hf_fixture.py");
    }

    internal static string WarmStart => Path.Combine(AppContext.BaseDirectory, Grpo.Cli.DemoCommand.WarmStartFolder);

    private static void SaveCheckpoint(string folder, Transformer model, ITokenizer tokenizer) =>
        Checkpoint.Save(folder, model, new AdamW(model.Parameters, 1e-3f), new Rng(1), extra: null, tokenizer);

    [Fact]
    public void CharTokenizerRoundTripsThroughItsFile()
    {
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        SaveCheckpoint(temp, new Transformer(TransformerConfig.Tiny with { VocabSize = tokenizer.VocabSize }, 1), tokenizer);
        Assert.True(File.Exists(Path.Combine(temp, TokenizerFiles.CharTokenizerFile)));
        Assert.False(File.Exists(Path.Combine(temp, "tokenizer.json")));  // transformers would read that as its own format

        var (_, loaded) = ModelFolder.Load(temp);
        var chars = Assert.IsType<CharTokenizer>(loaded);
        Assert.Equal(ArithmeticTask.Alphabet, chars.Alphabet);
        Assert.Equal(tokenizer.Encode("12 * 5 = 60\nAnswer: 60", addBos: true), chars.Encode("12 * 5 = 60\nAnswer: 60", addBos: true));
    }

    [Fact]
    public void HfTokenizerFilesAreCopiedFromItsFolder()
    {
        var (model, tokenizer) = ModelFolder.Load(HfFixture("llama"));
        SaveCheckpoint(temp, model, tokenizer!);
        var reloaded = Assert.IsType<HfTokenizer>(ModelFolder.LoadTokenizer(temp));
        Assert.Equal(tokenizer!.Eos, reloaded.Eos);
        Assert.Equal(tokenizer.Bos, reloaded.Bos);
        const string text = "Natalia sold clips to 48 of her friends in April.";
        Assert.Equal(tokenizer.Encode(text, addBos: true), reloaded.Encode(text, addBos: true));
    }

    [Fact]
    public void TheShippedWarmStartsAlphabetComesFromTrainerState()
    {
        Assert.False(File.Exists(Path.Combine(WarmStart, TokenizerFiles.CharTokenizerFile)));
        var chars = Assert.IsType<CharTokenizer>(ModelFolder.LoadTokenizer(WarmStart));
        Assert.Equal(ArithmeticTask.Alphabet, chars.Alphabet);
    }

    [Fact]
    public void AFolderWithoutTokenizerHasNone()
    {
        Checkpoint.SaveModel(temp, new Transformer(TransformerConfig.Tiny, 1));
        Assert.Null(ModelFolder.LoadTokenizer(temp));
    }

    [Theory]
    [InlineData("{\"type\": \"bpe\", \"alphabet\": \"ab\"}", "\"type\" is not \"char\"")]
    [InlineData("{\"type\": \"char\"}", "missing \"alphabet\"")]
    [InlineData("{\"type\": \"char\", \"alphabet\": 7}", "\"alphabet\" is not a string")]
    [InlineData("{\"type\": \"char\", \"alphabet\": \"abca\"}", "the alphabet repeats character 'a'")]
    [InlineData("{\"type\": \"char\", \"alphabet\": ", "not valid JSON")]
    public void AMalformedCharTokenizerFileIsOneLine(string json, string expected)
    {
        File.WriteAllText(Path.Combine(temp, TokenizerFiles.CharTokenizerFile), json);
        var error = Assert.Throws<ModelFormatException>(() => ModelFolder.LoadTokenizer(temp));
        Assert.Contains(expected, error.Message);
        Assert.Contains(TokenizerFiles.CharTokenizerFile, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }
}
