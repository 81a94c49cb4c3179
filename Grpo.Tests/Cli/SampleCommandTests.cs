// `grpo sample` end to end on a saved Tiny checkpoint: a good request exits 0; a token outside the
// vocabulary, a prompt past the context, text without a tokenizer, or a missing folder exit 1.
using Grpo.Cli;
using Grpo.Model;

namespace Grpo.Tests.Cli;

// Commands run in-process share Console and Spectre.Console's display: the "Console" collection runs alone.
[Collection("Console")]
public class SampleCommandTests : IDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "grpo-sample-" + Guid.NewGuid().ToString("N"));

    public SampleCommandTests() => Checkpoint.SaveModel(folder, new Transformer(TransformerConfig.Tiny, 1));

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public void ExitCodes()
    {
        // Tiny: vocabulary 32, context 64.
        Assert.Equal(0, Program.Main(["sample", "--model", folder, "--prompt-tokens", "1,2,3", "--max-new-tokens", "4", "--top-k", "5", "--json"]));
        Assert.Equal(1, Program.Main(["sample", "--model", folder, "--prompt-tokens", "1,32", "--max-new-tokens", "4"]));
        Assert.Equal(1, Program.Main(["sample", "--model", folder, "--prompt-tokens", string.Join(",", Enumerable.Repeat(1, 64)), "--max-new-tokens", "1"]));
        Assert.Equal(1, Program.Main(["sample", "--model", folder, "--prompt-tokens", "1,2", "--max-new-tokens", "63"]));
        Assert.Equal(1, Program.Main(["sample", "--model", folder, "--prompt", "hello"]));
        Assert.Equal(1, Program.Main(["sample", "--model", folder + "-missing", "--prompt-tokens", "1"]));
    }
}
