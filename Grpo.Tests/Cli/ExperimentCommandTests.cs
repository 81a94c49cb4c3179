// `grpo experiment paradigms|iterative` at tiny sizes from the shipped warm start (2 steps of 1 question
// x G 2, evaluations on 2 problems x 2 samples): each finishes in seconds and leaves a summary.json
// of the documented shape; bad input is one line and exit code 1.
using System.Text.Json.Nodes;
using Grpo.Cli;

namespace Grpo.Tests.Cli;

// Commands run in-process share Console and Spectre.Console's display: the "Console" collection runs alone.
[Collection("Console")]
public class ExperimentCommandTests : IDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "grpo-experiment-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
    }

    private static T Tiny<T>(T settings, string folder) where T : ExperimentSettings
    {
        settings.Name = folder;   // a rooted name is the run folder itself
        settings.Steps = 2;
        settings.QuestionsPerStep = 1;
        settings.GroupSize = 2;
        settings.EvalEvery = 1;
        settings.CurveProblems = 2;
        settings.CurveSamples = 2;
        settings.FinalProblems = 2;
        settings.FinalSamples = 2;
        return settings;
    }

    /// <summary>Checks what every experiment's summary.json holds; returns its arms.</summary>
    private JsonArray CheckSummary(string experiment, int arms)
    {
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "summary.json")))!.AsObject();
        Assert.Equal(experiment, (string?)summary["experiment"]);
        Assert.Equal("cpu", (string?)summary["device"]);
        Assert.Equal(4, (long)summary["sampledCompletionsPerArm"]!);   // 2 steps x 1 question x G 2
        Assert.InRange((double)summary["before"]!["pass@1"]!, 0, 1);
        var list = summary["arms"]!.AsArray();
        Assert.Equal(arms, list.Count);
        Assert.Equal(arms, summary["orderingByFinalPassAt1"]!.AsArray().Count);
        foreach (var arm in list)
        {
            Assert.False(string.IsNullOrEmpty((string?)arm!["name"]));
            Assert.Equal(4, (long)arm["sampledCompletions"]!);
            // Points at steps 0, 1, 2 (every step), each with rates in [0, 1].
            var curve = arm["curve"]!.AsArray();
            Assert.Equal([0L, 1L, 2L], curve.Select(p => (long)p!["step"]!));
            Assert.All(curve, p => Assert.InRange((double)p!["pass@1"]!, 0, 1));
            Assert.InRange((double)arm["final"]!["pass@1"]!, 0, 1);
            Assert.InRange((double)arm["final"]!["greedy"]!, 0, 1);
            Assert.True(File.Exists(Path.Combine(folder, ExperimentReport.Slug((string)arm["name"]!), "metrics.jsonl")));
        }
        foreach (var file in new[] { "accuracy.png", "greedy.png", "reward.png", "kl.png", "report.md" })
            Assert.True(File.Exists(Path.Combine(folder, file)), file);
        return list;
    }

    [Fact]
    public void ParadigmsRunsFourArmsAndWritesItsSummary()
    {
        Assert.Equal(0, ExperimentCommand.RunParadigms(Tiny(new ParadigmsSettings(), folder)));
        var arms = CheckSummary("paradigms", 4);
        Assert.Equal(["RFT", "Online RFT", "GRPO+OS", "GRPO+PS"], arms.Select(a => (string)a!["name"]!));
        Assert.Equal(["Rft", "OnlineRft", "Grpo", "Grpo"], arms.Select(a => (string)a!["method"]!));
        Assert.Equal("Process", (string?)arms[3]!["supervision"]);
    }

    [Fact]
    public void IterativeRunsTwoArmsAndWritesItsSummary()
    {
        var settings = Tiny(new IterativeSettings(), folder);
        settings.ResetEvery = 1;
        Assert.Equal(0, ExperimentCommand.RunIterative(settings));
        var arms = CheckSummary("iterative", 2);
        Assert.Equal([0L, 1L], arms.Select(a => (long)a!["referenceResetEvery"]!));
    }

    [Fact]
    public void BadInputIsOneLineAndExitCodeOne()
    {
        Assert.Equal(1, Program.Main(["experiment", "paradigms", "--arms", "ppo", "--name", folder]));
        Assert.Equal(1, Program.Main(["experiment", "iterative", "--beta", "0", "--name", folder]));
        Assert.Equal(1, Program.Main(["experiment", "iterative", "--reset-every", "500", "--name", folder]));
        Assert.Equal(1, Program.Main(["experiment", "paradigms", "--model", folder + "-missing", "--name", folder]));
    }
}
