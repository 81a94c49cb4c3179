// `grpo grpo --model DIR`: GRPO (or Online RFT / RFT, --method) on a task from a model folder (a
// checkpoint of ours or a Hugging Face folder), logging every step to metrics.jsonl in --out and
// saving the final checkpoint there, with its tokenizer. Every setting of the loop is an option
// (Rl/GrpoSettings.cs); --preset deepseekmath starts from the paper's values. --task gsm8k reads
// --data with the folder's tokenizer (Cli/TaskChoice.cs).
using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Model;
using Grpo.Rl;
using Grpo.Tasks;
using Spectre.Console;

namespace Grpo.Cli;

public static class GrpoCommand
{
    private static readonly JsonSerializerOptions MetricsJson = new(SettingsBinder<GrpoSettings>.Json) { WriteIndented = false };

    public static Command Create()
    {
        var command = new Command("grpo", "Train a model with GRPO (DeepSeekMath Algorithm 1), Online RFT or RFT on a task, from a checkpoint or a Hugging Face folder");
        var model = new Option<string>("--model") { Description = "model folder to start from: the output of sft, or a Hugging Face folder", Required = true };
        var output = new Option<string>("--out") { Description = "run folder: metrics.jsonl and the final checkpoint", DefaultValueFactory = _ => "runs/grpo" };
        var taskName = new Option<string>("--task") { Description = "arithmetic or gsm8k", DefaultValueFactory = _ => "arithmetic" };
        var data = new Option<string?>("--data") { Description = "for --task gsm8k: a folder with train.jsonl and test.jsonl, or a JSONL file of training problems" };
        var device = DeviceOption.CreateCpuOnly();
        var preset = new Option<string?>("--preset") { Description = "deepseekmath: start from the paper's settings (options still override)" };
        command.Options.Add(model);
        command.Options.Add(output);
        command.Options.Add(taskName);
        command.Options.Add(data);
        command.Options.Add(preset);
        command.Options.Add(device);
        var binder = new SettingsBinder<GrpoSettings>(command);
        command.SetAction(parse => CliErrors.Run(parse, () =>
        {
            DeviceOption.ResolveCpuOnly(parse.GetValue(device)!, parse.InvocationConfiguration.Error);
            var settings = parse.GetValue(preset) switch
            {
                null => binder.Bind(parse),
                "deepseekmath" => binder.Bind(parse, GrpoSettings.DeepSeekMath()),
                var other => throw new ArgumentException($"unknown preset '{other}' (expected deepseekmath)"),
            };
            settings.Validate();
            string folder = parse.GetValue(model)!;
            var (policy, modelTokenizer) = ModelFolder.Load(folder);
            var (task, tokenizer, note) = TaskChoice.Create(parse.GetValue(taskName)!, parse.GetValue(data), TaskUse.Training, modelTokenizer, folder,
                new ContextBudget(policy.Config.MaxSeqLen, settings.MaxNewTokens));
            if (note is not null) parse.InvocationConfiguration.Error.WriteLine($"note: {note}");
            string outDir = parse.GetValue(output)!;
            var metrics = Train(policy, task, tokenizer, settings, outDir);
            AnsiConsole.MarkupLine($"{settings.Method} done: {metrics.Count} steps, training reward {metrics.Take(5).Average(m => m.RewardMean):F3} -> {metrics.TakeLast(5).Average(m => m.RewardMean):F3}; run folder [bold]{Markup.Escape(outDir)}[/]");
            return 0;
        }));
        return command;
    }

    /// <summary>Runs the loop with a progress bar, appending each step to outDir/metrics.jsonl; saves the final checkpoint.</summary>
    public static List<GrpoStepMetrics> Train(Transformer policy, IRlTask task, ITokenizer tokenizer, GrpoSettings settings, string outDir)
    {
        settings.Validate();
        Directory.CreateDirectory(outDir);
        var trainer = new GrpoTrainer(policy, task, tokenizer, settings, Rewards.ForTask(task, settings.FormatRewardWeight));
        var metrics = new List<GrpoStepMetrics>();
        using var log = new StreamWriter(Path.Combine(outDir, "metrics.jsonl"), append: false);
        Progress.Run(settings.Method.ToString().ToUpperInvariant(), settings.Steps, advance =>
        {
            for (int step = 0; step < settings.Steps; step++)
            {
                var m = trainer.Step();
                metrics.Add(m);
                log.WriteLine(JsonSerializer.Serialize(m, MetricsJson));
                log.Flush();
                advance($"reward {m.RewardMean:F2}, accuracy {m.Accuracy:F2}, length {m.CompletionLengthMean:F0}");
            }
        });
        if (trainer.Errors is { } firstError) AnsiConsole.MarkupLine($"[yellow]{trainer.RewardErrors} reward errors; first: {Markup.Escape(firstError)}[/]");
        var extra = new JsonObject { ["task"] = task.Name, ["alphabet"] = (tokenizer as CharTokenizer)?.Alphabet, ["method"] = settings.Method.ToString(), ["steps"] = settings.Steps };
        Checkpoint.Save(Path.Combine(outDir, "final"), policy, trainer.Optimizer, trainer.Rng, extra, tokenizer);
        return metrics;
    }
}
