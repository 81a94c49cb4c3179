// What a demo run leaves behind: summary.json (the figures), report.md (the table and the settings,
// for a person), and PNG plots: reward and KL per step, pass@K and maj@K against K before and after.
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Rl;

namespace Grpo.Cli;

public static class RunReport
{
    public static void Write(string runDir, string device, double seconds, GrpoSettings settings, EvalResult before, EvalResult after,
        IReadOnlyList<GrpoStepMetrics> metrics)
    {
        var summary = new JsonObject
        {
            ["device"] = device,
            ["seconds"] = Math.Round(seconds, 1),
            ["heldOutProblems"] = before.Problems,
            ["samplesPerProblem"] = before.SamplesPerProblem,
            ["before"] = JsonSerializer.SerializeToNode(EvalCommand.ToJson(before)),
            ["after"] = JsonSerializer.SerializeToNode(EvalCommand.ToJson(after)),
            ["grpoSteps"] = metrics.Count,
            ["settings"] = JsonSerializer.SerializeToNode(settings, SettingsBinder<GrpoSettings>.Json),
        };
        File.WriteAllText(Path.Combine(runDir, "summary.json"), summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        var steps = metrics.Select(m => (double)m.Step).ToArray();
        Plots.Line(Path.Combine(runDir, "reward.png"), "Training reward per step", "step", "reward",
            [new("reward mean", steps, metrics.Select(m => m.RewardMean).ToArray()),
             new("accuracy", steps, metrics.Select(m => m.Accuracy).ToArray())]);
        Plots.Line(Path.Combine(runDir, "kl.png"), "KL to the reference and entropy per step", "step", "nats",
            [new("KL (k3)", steps, metrics.Select(m => m.Kl).ToArray()),
             new("entropy", steps, metrics.Select(m => m.Entropy).ToArray())]);
        var ks = before.PassAtK.Keys.Select(k => (double)k).ToArray();
        Plots.Line(Path.Combine(runDir, "pass_maj_at_k.png"), "Held-out pass@K and maj@K (DeepSeekMath Figure 7)", "K", "accuracy",
            [new("pass@K before", ks, before.PassAtK.Values.ToArray()), new("pass@K after", ks, after.PassAtK.Values.ToArray()),
             new("maj@K before", ks, before.MajAtK.Values.ToArray()), new("maj@K after", ks, after.MajAtK.Values.ToArray())], logX: true, legendOutside: true);

        var report = new StringBuilder();
        report.AppendLine("# Grpo demo run").AppendLine();
        report.AppendLine($"Device {device}, {seconds:F0} s in all, {metrics.Count} GRPO steps, {before.Problems} held-out problems x {before.SamplesPerProblem} samples.").AppendLine();
        report.AppendLine("| held-out | before GRPO | after GRPO |").AppendLine("|---|---|---|");
        var b = EvalCommand.ToJson(before); var a = EvalCommand.ToJson(after);
        foreach (var key in b.Keys) report.AppendLine($"| {key} | {100 * b[key]:F1}% | {100 * a[key]:F1}% |");
        report.AppendLine().AppendLine("![reward](reward.png) ![kl](kl.png) ![pass and maj at K](pass_maj_at_k.png)").AppendLine();
        report.AppendLine("Settings:").AppendLine().AppendLine("```json").AppendLine(JsonSerializer.Serialize(settings, SettingsBinder<GrpoSettings>.Json)).AppendLine("```");
        File.WriteAllText(Path.Combine(runDir, "report.md"), report.ToString());
    }
}
