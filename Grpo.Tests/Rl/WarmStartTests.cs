// The shipped warm start (Grpo/WarmStart/arithmetic-small) reloads and reproduces the evaluation
// recorded next to it (evaluation.json, "check": 100 held-out problems x 4 samples, seed 7).
using System.Text.Json.Nodes;
using Grpo.Cli;
using Grpo.Model;
using Grpo.Rl;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Tests;

public class WarmStartTests
{
    [Fact]
    public void ReproducesItsRecordedEvaluation()
    {
        string folder = Path.Combine(AppContext.BaseDirectory, DemoCommand.WarmStartFolder);
        var recorded = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "evaluation.json")))!["check"]!["result"]!.AsObject();
        var (model, tokenizer) = ModelFolder.Load(folder);
        Assert.NotNull(tokenizer);
        var task = new ArithmeticTask();
        var result = Evaluator.Run(model, task, tokenizer!, task.HeldOut(100), 4, [1, 4], 48, new Rng(7));
        var measured = EvalCommand.ToJson(result);
        foreach (var (key, value) in recorded)
            Assert.True(Math.Abs(measured[key] - value!.GetValue<double>()) < 1e-9, $"{key}: recorded {value}, measured {measured[key]}");
    }
}
