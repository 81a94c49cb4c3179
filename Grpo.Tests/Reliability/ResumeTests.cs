// Resume is exact on the CPU: 2N steps in one go, and N steps + stop + resume + N steps, with the same
// seed, give the same metrics.jsonl (every loss, gradient norm and learning rate, bit for bit) and the
// same bytes of weights and AdamW moments. For SFT and for GRPO (with a KL reference that is reset
// during the run, mu = 2) and RFT (its frozen initial model), at Tiny sizes. A resume from an older
// checkpoint than the newest metrics line (a kill between checkpoints) cuts metrics.jsonl back first.
// Also: running twice gives the same bits (no scheduling-dependent sums in the parallel loops).
using System.Text.Json.Nodes;
using Grpo.Cli;
using Grpo.Model;
using Grpo.Rl;
using Grpo.Tasks;

namespace Grpo.Tests.Reliability;

[Collection("Console")]
public sealed class ResumeTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("grpo-resume-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private string Dir(string name) => Path.Combine(root, name);

    private static SftSettings Sft() => new() { Preset = "tiny", ContextLength = 128, Steps = 8, WarmupSteps = 2, BatchSize = 4, Seed = 5 };

    private static void TrainSft(RunOptions run)
    {
        var (task, tokenizer, _) = TaskChoice.Create("arithmetic", null, TaskUse.Training, null, null);
        CommandRunner.Capture(() => { SftCommand.Train(Sft(), task, tokenizer, null, run, out _); return 0; });
    }

    private static void AssertSameFiles(string expectedFolder, string actualFolder, params string[] files)
    {
        foreach (var file in files)
            Assert.True(File.ReadAllBytes(Path.Combine(expectedFolder, file)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(actualFolder, file))),
                $"{file} differs between {expectedFolder} and {actualFolder}");
    }

    [Fact]
    public void SftResumedIsBitIdenticalToOneRun()
    {
        TrainSft(new RunOptions(Dir("one")));
        TrainSft(new RunOptions(Dir("split"), CheckpointEvery: 3, StopAfter: 4));
        Assert.Equal(4, File.ReadAllLines(Path.Combine(Dir("split"), TrainingRun.MetricsFile)).Length);
        TrainSft(new RunOptions(Dir("split"), CheckpointEvery: 3, Resume: true));

        Assert.Equal(8, File.ReadAllLines(Path.Combine(Dir("one"), TrainingRun.MetricsFile)).Length);
        AssertSameFiles(Dir("one"), Dir("split"), TrainingRun.MetricsFile, Checkpoint.ModelFile, Checkpoint.OptimizerFile);
    }

    [Fact]
    public void SftResumedFromAnOlderCheckpointDropsTheLaterMetricsAndMatches()
    {
        // Stopped after step 5 with checkpoints at 2, 4 and 5; step 5's is lost (as a kill would lose
        // it): the resume starts from step 4, metrics.jsonl is cut to 4 lines, and steps 5..8 are redone.
        TrainSft(new RunOptions(Dir("one")));
        TrainSft(new RunOptions(Dir("killed"), CheckpointEvery: 2, StopAfter: 5));
        Directory.Delete(CheckpointStore.FolderFor(Dir("killed"), 5), recursive: true);
        File.AppendAllText(Path.Combine(Dir("killed"), TrainingRun.MetricsFile), "{\"step\": 6, \"loss\": 1.");   // a line cut short
        TrainSft(new RunOptions(Dir("killed"), CheckpointEvery: 2, Resume: true));
        AssertSameFiles(Dir("one"), Dir("killed"), TrainingRun.MetricsFile, Checkpoint.ModelFile, Checkpoint.OptimizerFile);
    }

    [Fact]
    public void SftTwiceGivesTheSameBits()
    {
        TrainSft(new RunOptions(Dir("a")));
        TrainSft(new RunOptions(Dir("b")));
        AssertSameFiles(Dir("a"), Dir("b"), TrainingRun.MetricsFile, Checkpoint.ModelFile, Checkpoint.OptimizerFile);
    }

    private static GrpoSettings Grpo(TrainingMethod method, float beta) => new()
    {
        Method = method, Steps = 6, QuestionsPerStep = 2, GroupSize = 4, Mu = 2, Beta = beta, ReferenceResetEvery = 2,
        MaxNewTokens = 24, LearningRate = 3e-3f, Seed = 9,
    };

    private List<GrpoStepMetrics> TrainGrpo(TrainingMethod method, float beta, RunOptions run)
    {
        var model = Checkpoint.LoadModel(CommandRunner.SaveTinyArithmeticModel(Dir("start")));
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        List<GrpoStepMetrics>? metrics = null;
        CommandRunner.Capture(() => { metrics = GrpoCommand.Train(model, new CommandRunner.EvenLengthTask(), tokenizer, Grpo(method, beta), run); return 0; });
        return metrics!;
    }

    /// <summary>metrics.jsonl without the timing fields (tokens/s, seconds), which differ from run to run.</summary>
    private static string[] StepLines(string runDir) =>
        File.ReadAllLines(Path.Combine(runDir, TrainingRun.MetricsFile)).Select(line =>
        {
            var json = JsonNode.Parse(line)!.AsObject();
            foreach (var timing in new[] { "samplingTokensPerSecond", "trainingTokensPerSecond", "stepSeconds" }) json.Remove(timing);
            return json.ToJsonString();
        }).ToArray();

    [Theory]
    [InlineData(TrainingMethod.Grpo, 0.04f)]
    [InlineData(TrainingMethod.Rft, 0f)]
    public void GrpoResumedIsBitIdenticalToOneRun(TrainingMethod method, float beta)
    {
        var one = TrainGrpo(method, beta, new RunOptions(Dir("one")));
        Assert.True(one.Count(m => m.GroupsTrained > 0) >= 3, "the test needs steps that train");
        if (beta > 0) Assert.Contains(one, m => m.Kl > 0);
        TrainGrpo(method, beta, new RunOptions(Dir("split"), CheckpointEvery: 2, StopAfter: 3));
        // The checkpoint of step 3 holds the reference (reset at step 2) or RFT's initial model.
        string extraFile = beta > 0 ? GrpoCommand.ReferenceFile : GrpoCommand.InitialFile;
        Assert.True(File.Exists(Path.Combine(CheckpointStore.FolderFor(Dir("split"), 3), extraFile)));
        var resumed = TrainGrpo(method, beta, new RunOptions(Dir("split"), CheckpointEvery: 2, Resume: true));

        Assert.Equal(3, resumed.Count);
        Assert.Equal(StepLines(Dir("one")), StepLines(Dir("split")));
        AssertSameFiles(Path.Combine(Dir("one"), "final"), Path.Combine(Dir("split"), "final"), Checkpoint.ModelFile, Checkpoint.OptimizerFile);
    }
}
