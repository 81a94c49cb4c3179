// The commands wired end to end through Program.Run (output and errors captured): sample --prompt on
// the shipped warm start and on a Hugging Face fixture folder, checkpoints that carry their tokenizer
// from sft to sample, --task gsm8k for eval and grpo with the fixture model (skipped without
// shared/data/gsm8k), --device, the demo's summary.json, every command's --help, and bad input as
// one `error:` line with exit code 1.
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Grpo.Cli;
using Grpo.Compute;
using Grpo.Tasks;
using Grpo.Tests.Model;

namespace Grpo.Tests.Cli;

// Commands run in-process share Console and Spectre.Console's display: the "Console" collection runs alone.
[Collection("Console")]
public sealed class CommandWiringTests : IDisposable
{
    private readonly string temp = Directory.CreateTempSubdirectory("grpo-wiring-").FullName;

    public void Dispose() => Directory.Delete(temp, recursive: true);

    private static string Llama => TokenizerFilesTests.HfFixture("llama");
    private static string WarmStart => TokenizerFilesTests.WarmStart;

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var (output, error) = (new StringWriter(), new StringWriter());
        int code = Program.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    private static JsonObject LastJsonLine(string output) =>
        JsonNode.Parse(output.TrimEnd().Split('\n')[^1])!.AsObject();

    [Fact]
    public void SampleWithAPromptOnTheWarmStartEndsInAnAnswerLine()
    {
        // A held-out arithmetic problem, greedy: the warm start writes its steps and then "Answer: N".
        var problem = new ArithmeticTask(ArithmeticDifficulty.Easy).HeldOut(1)[0];
        var (code, output, error) = Run("sample", "--model", WarmStart, "--prompt", problem.Prompt,
            "--temperature", "0", "--max-new-tokens", "48", "--device", "cpu", "--json");
        Assert.True(code == 0, error);
        var json = LastJsonLine(output);
        var tokens = json["tokens"]!.AsArray();
        Assert.Equal(tokens.Count, json["logProbs"]!.AsArray().Count);
        Assert.All(json["logProbs"]!.AsArray(), lp => Assert.True(lp!.GetValue<double>() <= 0));
        string text = json["text"]!.GetValue<string>();
        Assert.Matches(new Regex(@"Answer: -?[0-9]+$"), text);
        Assert.Equal("Eos", json["finish"]!.GetValue<string>());  // --eos defaulted to the tokenizer's EOS
        Assert.Equal(CharTokenizer.Eos, tokens[^1]!.GetValue<int>());
    }

    [Fact]
    public void SampleWithAPromptOnAHuggingFaceFolderDecodesItsText()
    {
        var (code, output, error) = Run("sample", "--model", Llama, "--prompt", "Natalia sold clips to 48 of her friends",
            "--temperature", "0", "--max-new-tokens", "6", "--json");
        Assert.True(code == 0, error);
        var json = LastJsonLine(output);
        var tokens = json["tokens"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray();
        Assert.Equal(6, tokens.Length);
        Assert.Equal(6, json["logProbs"]!.AsArray().Count);
        var tokenizer = Grpo.Model.ModelFolder.LoadTokenizer(Llama)!;
        Assert.Equal(tokenizer.Decode(tokens), json["text"]!.GetValue<string>());

        var (readableCode, readable, _) = Run("sample", "--model", Llama, "--prompt", "Natalia", "--temperature", "0", "--max-new-tokens", "3");
        Assert.Equal(0, readableCode);
        Assert.StartsWith("text:", readable);
    }

    [Fact]
    public void AnSftCheckpointCarriesItsTokenizerToSample()
    {
        string outDir = Path.Combine(temp, "sft");
        var (code, _, error) = Run("sft", "--steps", "2", "--warmup-steps", "1", "--batch-size", "2", "--out", outDir, "--device", "cpu");
        Assert.True(code == 0, error);
        Assert.True(File.Exists(Path.Combine(outDir, Grpo.Model.TokenizerFiles.CharTokenizerFile)));
        var (sampleCode, output, sampleError) = Run("sample", "--model", outDir, "--prompt", "Sam has 3 apples.\n", "--max-new-tokens", "8", "--json");
        Assert.True(sampleCode == 0, sampleError);
        Assert.NotNull(LastJsonLine(output)["text"]!.GetValue<string>());
    }

    [SkippableFact]
    public void EvalOnGsm8kWithTheFixtureModelReportsRates()
    {
        Skip.If(TestData.Gsm8kDir is null, TestData.Gsm8kMissing);
        var (code, output, error) = Run("eval", "--model", Llama, "--task", "gsm8k", "--data", TestData.Gsm8kDir!,
            "--problems", "3", "--samples", "2", "--max-new-tokens", "8", "--json");
        Assert.True(code == 0, error);
        var json = LastJsonLine(output);
        Assert.Equal(["greedy", "pass@1", "maj@1"], json.Select(p => p.Key));
        Assert.All(json, p => Assert.InRange(p.Value!.GetValue<double>(), 0, 1));
        // The fixture's context is 128 tokens: the test questions that do not fit are left out, with a note.
        Assert.Contains("note: gsm8k:", error);
    }

    [SkippableFact]
    public void GrpoOnGsm8kWithTheFixtureModelTakesAStepAndSavesTheTokenizer()
    {
        Skip.If(TestData.Gsm8kDir is null, TestData.Gsm8kMissing);
        string outDir = Path.Combine(temp, "grpo");
        var (code, _, error) = Run("grpo", "--model", Llama, "--task", "gsm8k", "--data", TestData.Gsm8kDir!, "--steps", "1",
            "--questions-per-step", "2", "--group-size", "2", "--max-new-tokens", "8", "--out", outDir);
        Assert.True(code == 0, error);
        Assert.Single(File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")));
        string final = Path.Combine(outDir, "final");
        Assert.True(File.Exists(Path.Combine(final, "tokenizer.json")));
        var (sampleCode, output, sampleError) = Run("sample", "--model", final, "--prompt", "Natalia", "--max-new-tokens", "4", "--json");
        Assert.True(sampleCode == 0, sampleError);
        Assert.NotNull(LastJsonLine(output)["text"]);
    }

    [Fact]
    public void Gsm8kFromOneFileIsTrainingDataForSftAndGrpoAndHeldOutForEval()
    {
        string file = Path.Combine(temp, "two.jsonl");
        File.WriteAllText(file, """
            {"question": "Tom has 2 cats and gets 3 more. How many cats?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"}
            {"question": "A box holds 4 pens. How many pens are in 2 boxes?", "answer": "4 * 2 = <<4*2=8>>8\n#### 8"}
            """);
        var tokenizer = Grpo.Model.ModelFolder.LoadTokenizer(Llama);
        var evaluation = TaskChoice.Create("gsm8k", file, TaskUse.Evaluation, tokenizer, Llama);
        Assert.Equal(["5", "8"], evaluation.Task.HeldOut(10).Select(p => p.Answer));
        Assert.Throws<TaskDataException>(() => evaluation.Task.SampleTraining(new Grpo.Sampling.Rng(1)));
        var training = TaskChoice.Create("gsm8k", file, TaskUse.Training, tokenizer, Llama);
        Assert.Empty(training.Task.HeldOut(10));
        Assert.Contains(training.Task.SampleTraining(new Grpo.Sampling.Rng(1)).Answer, new[] { "5", "8" });
        Assert.Same(tokenizer, training.Tokenizer);
        Assert.Null(training.Note);
    }

    [Fact]
    public void AutoAndCpuRunOnTheCpu()
    {
        // This machine has no CUDA device: auto falls back to the CPU.
        Assert.Same(Device.Cpu, DeviceOption.OpenForRun("auto"));
        Assert.Same(Device.Cpu, DeviceOption.OpenForRun("CPU"));
        Assert.Contains("no CUDA device found", Assert.Throws<ArgumentException>(() => DeviceOption.OpenForRun("cuda")).Message);
        Assert.Contains("unknown device", Assert.Throws<ArgumentException>(() => DeviceOption.OpenForRun("cpu-accelerator")).Message);
    }

    [Fact]
    public void TheDemoRecordsItsDeviceInSummaryJson()
    {
        string name = "wiring-test-" + Guid.NewGuid().ToString("N")[..8];
        string runDir = Path.Combine("runs", name);
        try
        {
            var (code, _, error) = Run("demo", "--name", name, "--device", "cpu", "--steps", "1", "--questions-per-step", "1",
                "--group-size", "2", "--eval-problems", "2", "--eval-samples", "1", "--max-new-tokens", "8");
            Assert.True(code == 0, error);
            var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(runDir, "summary.json")))!;
            Assert.Equal("cpu", summary["device"]!.GetValue<string>());
        }
        finally
        {
            if (Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true);
        }
    }

    [Fact]
    public void TheDemoFromScratchRunsItsOwnShortSft()
    {
        // 5 SFT steps: the warm-up (50 by default) shrinks to a tenth of the run instead of refusing.
        string name = "wiring-test-" + Guid.NewGuid().ToString("N")[..8];
        string runDir = Path.Combine("runs", name);
        try
        {
            var (code, _, error) = Run("demo", "--name", name, "--from-scratch", "--sft-steps", "5", "--steps", "1",
                "--questions-per-step", "1", "--group-size", "2", "--eval-problems", "2", "--eval-samples", "1", "--max-new-tokens", "8");
            Assert.True(code == 0, error);
            Assert.True(File.Exists(Path.Combine(runDir, "sft", "model.safetensors")));
            Assert.True(File.Exists(Path.Combine(runDir, "summary.json")));
        }
        finally
        {
            if (Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true);
        }
    }

    [Fact]
    public void HelpListsEveryCommandAndEachCommandHasHelp()
    {
        string[] commands = ["demo", "sft", "grpo", "eval", "sample", "tokenize", "explain", "reward", "bench", "check"];
        var (code, output, _) = Run("--help");
        Assert.Equal(0, code);
        foreach (string command in commands) Assert.Matches(new Regex($@"(?m)^\s+{command}\s+\S"), output);
        foreach (string command in commands)
        {
            var (commandCode, help, _) = Run(command, "--help");
            Assert.Equal(0, commandCode);
            Assert.Contains("Description:", help);
            Assert.Contains("--help", help);
        }
    }

    public static TheoryData<string[], string> BadInput => new()
    {
        { ["sample", "--model", WarmStart, "--prompt", "1 + 1", "--device", "tpu"], "error: unknown device 'tpu' (expected auto, cpu or cuda)" },
        { ["eval", "--model", WarmStart, "--device", "cuda"], "error: no CUDA device found" },
        { ["grpo", "--model", WarmStart, "--device", "cuda"], "error: no CUDA device found" },
        { ["sft", "--device", "gpu"], "error: unknown device 'gpu'" },
        { ["sft", "--precision", "fp16"], "error: --precision: cannot read 'fp16' as matmulprecision (one of fp32, bf16)" },
        { ["grpo", "--model", WarmStart, "--precision", "half"], "error: --precision: cannot read 'half' as matmulprecision (one of fp32, bf16)" },
        { ["demo", "--precision", "tf32"], "error: --precision: cannot read 'tf32' as matmulprecision (one of fp32, bf16)" },
        { ["check", "--device", "cpu-accelerator", "--precision", "fp8"], "error: --precision must be fp32 or bf16, not 'fp8'" },
        { ["demo", "--device", "cuda"], "error: no CUDA device found" },
        { ["eval", "--model", Llama, "--task", "gsm8k"], "error: --task gsm8k needs --data" },
        { ["grpo", "--model", Llama, "--task", "gsm8k", "--data", "/no/such/gsm8k"], "error: --data /no/such/gsm8k: no such file or folder" },
        { ["sft", "--task", "gsm8k", "--data", "train.jsonl"], "error: --task gsm8k needs --model DIR" },
        { ["eval", "--model", WarmStart, "--task", "gsm8k", "--data", "test.jsonl"], "error: --task gsm8k needs a tokenizer for free text" },
        { ["eval", "--model", Llama, "--task", "mmlu"], "error: unknown task 'mmlu'" },
        { ["sample", "--model", WarmStart, "--prompt", "1 + 1", "--prompt-tokens", "1,2"], "error: give exactly one of --prompt or --prompt-tokens" },
        { ["sample", "--model", WarmStart], "error: give exactly one of --prompt or --prompt-tokens" },
        { ["sample", "--model", WarmStart, "--prompt", "1 + 1 = %"], "error: character '%' (U+0025) at index 8 is not in the tokenizer's alphabet" },
    };

    [Theory, MemberData(nameof(BadInput))]
    public void BadInputIsOneErrorLineAndExitCodeOne(string[] args, string expectedStart)
    {
        var (code, output, error) = Run(args);
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.StartsWith(expectedStart, error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    [Fact]
    public void Gsm8kWithAModelWithoutTokenizerIsRefused()
    {
        Grpo.Model.Checkpoint.SaveModel(temp, new Grpo.Model.Transformer(Grpo.Model.TransformerConfig.Tiny, 1));
        var (code, _, error) = Run("eval", "--model", temp, "--task", "gsm8k", "--data", "test.jsonl");
        Assert.Equal(1, code);
        Assert.StartsWith($"error: --task gsm8k needs a tokenizer, and {temp} has none", error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }
}
