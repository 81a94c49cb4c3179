// What an experiment (`grpo experiment paradigms|iterative`) leaves in its run folder:
//   summary.json     the settings, the budget, the start model's evaluation, and per arm its curve
//                    (held-out greedy / pass@1 / maj@k every few steps), its final evaluation, its
//                    training reward and KL at the start and the end, and its time
//   accuracy.png     held-out pass@1 against steps, one line per arm (DeepSeekMath Figures 5 and 6)
//   greedy.png       the same for greedy accuracy
//   reward.png       training reward per step (mean of 5), one line per arm; kl.png the KL per step
//   report.md        the table and the plots, for a person
// and the table the command prints. Tests: Grpo.Tests/Cli/ExperimentCommandTests.cs (summary.json's shape).
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Rl;
using Spectre.Console;

namespace Grpo.Cli;

public static class ExperimentReport
{

    /// <summary>An arm's folder name: "GRPO+PS" -> "grpo-ps", "reset every 30" -> "reset-every-30".</summary>
    public static string Slug(string label) =>
        string.Join("-", label.ToLowerInvariant().Split([' ', '+', '/'], StringSplitOptions.RemoveEmptyEntries));

    /// <summary>Mean training reward over the first or last n steps of an arm.</summary>
    private static double RewardOver(IReadOnlyList<GrpoStepMetrics> metrics, int n, bool last) =>
        metrics.Count == 0 ? double.NaN : (last ? metrics.TakeLast(n) : metrics.Take(n)).Average(m => m.RewardMean);

    public static Table Table(EvalResult before, IReadOnlyList<ArmResult> arms)
    {
        int maxK = before.PassAtK.Keys.Max();
        var table = new Table().AddColumn("arm").AddColumn(new TableColumn("pass@1 curve").RightAligned())
            .AddColumn(new TableColumn("greedy").RightAligned()).AddColumn(new TableColumn("pass@1").RightAligned())
            .AddColumn(new TableColumn($"maj@{maxK}").RightAligned()).AddColumn(new TableColumn($"pass@{maxK}").RightAligned())
            .AddColumn(new TableColumn("train reward").RightAligned()).AddColumn(new TableColumn("seconds").RightAligned());
        static string Pct(double v) => $"{100 * v:F1}%";
        table.AddRow("start (SFT)", "", Pct(before.Greedy), Pct(before.PassAt1), Pct(before.MajAtK[maxK]), Pct(before.PassAtK[maxK]), "", "");
        foreach (var arm in arms)
            table.AddRow(Markup.Escape(arm.Name), $"{Pct(arm.Curve[0].PassAt1)} -> {Pct(arm.Curve[^1].PassAt1)}",
                Pct(arm.Final.Greedy), Pct(arm.Final.PassAt1), Pct(arm.Final.MajAtK[maxK]), Pct(arm.Final.PassAtK[maxK]),
                $"{RewardOver(arm.Metrics, 10, false):F2} -> {RewardOver(arm.Metrics, 10, true):F2}", $"{arm.Seconds:F0}");
        return table;
    }

    public static void Write(string runDir, string experiment, string claim, double seconds, string model, object settings,
        EvalResult before, IReadOnlyList<ArmResult> arms, string device = "cpu")
    {
        var ordering = arms.OrderByDescending(a => a.Final.PassAt1).Select(a => a.Name).ToArray();
        var summary = new JsonObject
        {
            ["experiment"] = experiment,
            ["paper"] = claim,
            ["device"] = device,
            ["seconds"] = Math.Round(seconds, 1),
            ["model"] = model,
            ["sampledCompletionsPerArm"] = arms.Count == 0 ? 0 : (long)arms[0].Settings.Steps * arms[0].Settings.QuestionsPerStep * arms[0].Settings.GroupSize,
            ["curveEvaluation"] = CurveSize(settings),
            ["finalEvaluation"] = new JsonObject { ["problems"] = before.Problems, ["samples"] = before.SamplesPerProblem },
            ["before"] = JsonSerializer.SerializeToNode(EvalCommand.ToJson(before)),
            ["arms"] = new JsonArray(arms.Select(ArmJson).ToArray<JsonNode?>()),
            ["orderingByFinalPassAt1"] = new JsonArray(ordering.Select(n => (JsonNode?)n).ToArray()),
            ["settings"] = JsonSerializer.SerializeToNode(settings, settings.GetType(), SettingsBinder<GrpoSettings>.Json),
        };
        File.WriteAllText(Path.Combine(runDir, "summary.json"), summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));

        WritePlots(runDir, experiment, arms);

        var report = new StringBuilder();
        report.AppendLine($"# grpo experiment {experiment}").AppendLine();
        report.AppendLine($"Paper: {claim}.").AppendLine();
        report.AppendLine($"Start model `{model}`; {arms.Count} arms, each {summary["sampledCompletionsPerArm"]} sampled completions; device {device}; {seconds:F0} s in all.").AppendLine();
        int maxK = before.PassAtK.Keys.Max();
        report.AppendLine($"| arm | pass@1 curve | greedy | pass@1 | maj@{maxK} | pass@{maxK} | train reward | seconds |").AppendLine("|---|---|---|---|---|---|---|---|");
        report.AppendLine($"| start (SFT) | | {100 * before.Greedy:F1}% | {100 * before.PassAt1:F1}% | {100 * before.MajAtK[maxK]:F1}% | {100 * before.PassAtK[maxK]:F1}% | | |");
        foreach (var a in arms)
            report.AppendLine($"| {a.Name} | {100 * a.Curve[0].PassAt1:F1}% -> {100 * a.Curve[^1].PassAt1:F1}% | {100 * a.Final.Greedy:F1}% | {100 * a.Final.PassAt1:F1}% | {100 * a.Final.MajAtK[maxK]:F1}% | {100 * a.Final.PassAtK[maxK]:F1}% | {RewardOver(a.Metrics, 10, false):F2} -> {RewardOver(a.Metrics, 10, true):F2} | {a.Seconds:F0} |");
        report.AppendLine().AppendLine($"Ordering by final pass@1: {string.Join(" > ", ordering)}.").AppendLine();
        report.AppendLine("![accuracy](accuracy.png) ![greedy](greedy.png) ![reward](reward.png) ![kl](kl.png)").AppendLine();
        report.AppendLine("Settings:").AppendLine().AppendLine("```json").AppendLine(JsonSerializer.Serialize(settings, settings.GetType(), SettingsBinder<GrpoSettings>.Json)).AppendLine("```");
        File.WriteAllText(Path.Combine(runDir, "report.md"), report.ToString());
    }

    /// <summary>The four PNG curves of an experiment's arms (accuracy, greedy, reward, kl).</summary>
    public static void WritePlots(string runDir, string experiment, IReadOnlyList<ArmResult> arms)
    {
        Plots.Line(Path.Combine(runDir, "accuracy.png"), $"Held-out pass@1 against steps ({experiment})", "step", "pass@1",
            arms.Select(a => new Plots.Series(a.Name, a.Curve.Select(p => (double)p.Step).ToArray(), a.Curve.Select(p => p.PassAt1).ToArray())), legendOutside: true);
        Plots.Line(Path.Combine(runDir, "greedy.png"), $"Held-out greedy accuracy against steps ({experiment})", "step", "greedy accuracy",
            arms.Select(a => new Plots.Series(a.Name, a.Curve.Select(p => (double)p.Step).ToArray(), a.Curve.Select(p => p.Greedy).ToArray())), legendOutside: true);
        Plots.Line(Path.Combine(runDir, "reward.png"), "Training reward per step (mean of 5 steps)", "step", "reward",
            arms.Select(a => new Plots.Series(a.Name, a.Metrics.Select(m => (double)m.Step).ToArray(), Smooth(a.Metrics.Select(m => m.RewardMean).ToArray(), 5))), legendOutside: true);
        Plots.Line(Path.Combine(runDir, "kl.png"), "KL to the reference per step (k3; 0 when beta = 0)", "step", "nats",
            arms.Select(a => new Plots.Series(a.Name, a.Metrics.Select(m => (double)m.Step).ToArray(), a.Metrics.Select(m => m.Kl).ToArray())), legendOutside: true);
    }

    private static JsonObject CurveSize(object settings) => settings is ExperimentSettings s
        ? new JsonObject { ["problems"] = s.CurveProblems, ["samples"] = s.CurveSamples, ["every"] = s.EvalEvery }
        : new JsonObject();

    private static JsonObject ArmJson(ArmResult arm) => new()
    {
        ["name"] = arm.Name,
        ["method"] = arm.Settings.Method.ToString(),
        ["supervision"] = arm.Settings.Supervision.ToString(),
        ["referenceResetEvery"] = arm.Settings.ReferenceResetEvery,
        ["seconds"] = Math.Round(arm.Seconds, 1),
        ["sampledCompletions"] = (long)arm.Metrics.Count * arm.Settings.QuestionsPerStep * arm.Settings.GroupSize,
        ["trainingRewardFirst10"] = Math.Round(RewardOver(arm.Metrics, 10, false), 4),
        ["trainingRewardLast10"] = Math.Round(RewardOver(arm.Metrics, 10, true), 4),
        ["klLast10"] = arm.Metrics.Count == 0 ? 0 : Math.Round(arm.Metrics.TakeLast(10).Average(m => m.Kl), 6),
        ["curve"] = new JsonArray(arm.Curve.Select(p => (JsonNode?)new JsonObject
        {
            ["step"] = p.Step, ["completions"] = p.Completions, ["greedy"] = Math.Round(p.Greedy, 4),
            ["pass@1"] = Math.Round(p.PassAt1, 4), ["majAtMaxK"] = Math.Round(p.MajAtMaxK, 4),
        }).ToArray()),
        ["final"] = JsonSerializer.SerializeToNode(EvalCommand.ToJson(arm.Final)),
    };

    private static double[] Smooth(double[] values, int window) =>
        values.Select((_, i) => values.Skip(Math.Max(0, i - window + 1)).Take(Math.Min(window, i + 1)).Average()).ToArray();
}
