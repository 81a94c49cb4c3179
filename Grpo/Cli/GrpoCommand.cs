// `grpo grpo --model DIR`: GRPO (or Online RFT / RFT, --method) on a task from a model folder (a
// checkpoint of ours or a Hugging Face folder), logging
// every step to metrics.jsonl in --out and saving the final checkpoint there (OUT/final). Every setting
// of the loop is an option (Rl/GrpoSettings.cs); --preset deepseekmath starts from the paper's values.
// Checkpoints in OUT/checkpoints and --resume (Cli/TrainingRun.cs) restore the policy, AdamW, the RNG
// and the trainer's step, and the reference model (reference.safetensors, when beta > 0) and RFT's
// initial model (initial.safetensors) as they were: a resumed run takes the same steps as one that
// never stopped.
// --task gsm8k reads --data with the folder's tokenizer (Cli/TaskChoice.cs); checkpoints carry the tokenizer.
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
    public static Command Create()
    {
        var command = new Command("grpo", "Train a model with GRPO (DeepSeekMath Algorithm 1), Online RFT or RFT on a task, from a checkpoint or a Hugging Face folder");
        var model = new Option<string>("--model") { Description = "model folder to start from: the output of sft, or a Hugging Face folder", Required = true };
        var output = new Option<string>("--out") { Description = "run folder: metrics.jsonl and the final checkpoint", DefaultValueFactory = _ => "runs/grpo" };
        var taskName = new Option<string>("--task") { Description = "arithmetic or gsm8k", DefaultValueFactory = _ => "arithmetic" };
        var data = new Option<string?>("--data") { Description = "for --task gsm8k: a folder with train.jsonl and test.jsonl, or a JSONL file of training problems" };
        var device = DeviceOption.Create();
        var preset = new Option<string?>("--preset") { Description = "deepseekmath: start from the paper's settings (options still override)" };
        command.Options.Add(model);
        command.Options.Add(output);
        command.Options.Add(taskName);
        command.Options.Add(data);
        command.Options.Add(preset);
        command.Options.Add(device);
        var binder = new SettingsBinder<GrpoSettings>(command);
        var run = new RunOptionSet(command);
        command.SetAction(parse => CliErrors.Run(parse, () =>
        {
            var onDevice = DeviceOption.OpenForRun(parse.GetValue(device)!);
            var settings = parse.GetValue(preset) switch
            {
                null => binder.Bind(parse),
                "deepseekmath" => binder.Bind(parse, GrpoSettings.DeepSeekMath()),
                var other => throw new ArgumentException($"unknown preset '{other}' (expected deepseekmath)"),
            };
            settings.Validate();
            string outDir = parse.GetValue(output)!;
            var runOptions = run.Bind(parse, outDir);
            runOptions.Validate();
            string folder = parse.GetValue(model)!;
            var (policy, modelTokenizer) = ModelFolder.Load(folder);
            var (task, tokenizer, note) = TaskChoice.Create(parse.GetValue(taskName)!, parse.GetValue(data), TaskUse.Training, modelTokenizer, folder,
                new ContextBudget(policy.Config.MaxSeqLen, settings.MaxNewTokens));
            if (note is not null) parse.InvocationConfiguration.Error.WriteLine($"note: {note}");
            Train(policy.To(onDevice), task, tokenizer, settings, runOptions);
            return 0;
        }));
        return command;
    }

    public const string ReferenceFile = "reference.safetensors";
    public const string InitialFile = "initial.safetensors";

    /// <summary>Runs the loop with a progress bar, appending each step to outDir/metrics.jsonl; saves the final checkpoint (no periodic checkpoints, no resume).</summary>
    public static List<GrpoStepMetrics> Train(Transformer policy, IRlTask task, ITokenizer tokenizer, GrpoSettings settings, string outDir) =>
        Train(policy, task, tokenizer, settings, new RunOptions(outDir));

    /// <summary>Runs the loop with a progress bar, metrics.jsonl and checkpoints in run.OutDir (resuming when
    /// asked); saves the final checkpoint to run.OutDir/final. Returns the steps run by this call.</summary>
    public static List<GrpoStepMetrics> Train(Transformer policy, IRlTask task, ITokenizer tokenizer, GrpoSettings settings, RunOptions run)
    {
        settings.Validate();
        policy.Precision = settings.Precision;
        if (policy.Config.VocabSize < tokenizer.VocabSize)
            throw new ArgumentException($"the model's vocabulary ({policy.Config.VocabSize}) is smaller than the tokenizer's ({tokenizer.VocabSize})");
        if (settings.MaxNewTokens >= policy.Config.MaxSeqLen)
            throw new ArgumentException($"--max-new-tokens {settings.MaxNewTokens} leaves no room for a prompt in the model's context of {policy.Config.MaxSeqLen}");
        var training = new TrainingRun(run);
        var trainer = new GrpoTrainer(policy, task, tokenizer, settings, Rewards.ForTask(task, settings.FormatRewardWeight));
        trainer.StepIndex = training.Start(policy, trainer.Optimizer, trainer.Rng, folder => RestoreModels(trainer, folder));
        var extra = new JsonObject { ["task"] = task.Name, ["alphabet"] = (tokenizer as CharTokenizer)?.Alphabet, ["method"] = settings.Method.ToString(), ["steps"] = settings.Steps };
        string final = Path.Combine(run.OutDir, "final");
        var metrics = new List<GrpoStepMetrics>();
        string method = settings.Method.ToString().ToUpperInvariant();
        if (trainer.StepIndex >= settings.Steps)
        {
            Checkpoint.Save(final, policy, trainer.Optimizer, trainer.Rng, extra, tokenizer);
            AnsiConsole.MarkupLine($"{method}: the run in [bold]{Markup.Escape(run.OutDir)}[/] is already done ({trainer.StepIndex} of {settings.Steps} steps); final checkpoint in [bold]{Markup.Escape(final)}[/]");
            return metrics;
        }
        bool stoppedEarly = false;
        try
        {
            using var log = training.OpenMetrics();
            Progress.Run(method, settings.Steps, advance =>
            {
                while (trainer.StepIndex < settings.Steps)
                {
                    var m = trainer.Step();
                    metrics.Add(m);
                    // The line goes out before the checkpoint: metrics.jsonl never lacks a step a checkpoint holds.
                    log.WriteLine(JsonSerializer.Serialize(m, TrainingRun.MetricsJson));
                    log.Flush();
                    training.Record(m.Step, m.Skipped);
                    if (training.CheckpointDue(m.Step, settings.Steps))
                        training.Save(m.Step, policy, trainer.Optimizer, trainer.Rng, (JsonObject)extra.DeepClone(), folder => SaveModels(trainer, folder), tokenizer);
                    advance($"reward {m.RewardMean:F2}, accuracy {m.Accuracy:F2}, length {m.CompletionLengthMean:F0}");
                    if (training.StopsAfter(m.Step) && m.Step < settings.Steps) { stoppedEarly = true; break; }
                }
            }, start: trainer.StepIndex);
        }
        finally
        {
            // Once per run, however it ends: the completions whose reward function threw (each got 0).
            if (trainer.Errors is { } firstError)
                AnsiConsole.MarkupLine($"[yellow]{trainer.RewardErrors} reward errors (those completions got reward 0); first: {Markup.Escape(firstError)}[/]");
        }
        if (stoppedEarly)
        {
            AnsiConsole.MarkupLine($"{method} stopped after step {training.LastSaved} as asked (--stop-after); --resume continues from {Markup.Escape(CheckpointStore.FolderFor(run.OutDir, training.LastSaved))}");
            return metrics;
        }
        Checkpoint.Save(final, policy, trainer.Optimizer, trainer.Rng, extra, tokenizer);
        string skipped = training.SkippedSteps > 0 ? $", {training.SkippedSteps} skipped for a non-finite loss or gradient" : "";
        string reward = metrics.Count == 0 ? "" : $", training reward {metrics.Take(5).Average(m => m.RewardMean):F3} -> {metrics.TakeLast(5).Average(m => m.RewardMean):F3}";
        AnsiConsole.MarkupLine($"{method} done: {metrics.Count} steps{skipped}{reward}; run folder [bold]{Markup.Escape(run.OutDir)}[/]");
        return metrics;
    }

    /// <summary>The models besides the policy that the next steps read: the KL reference and RFT's initial model.</summary>
    private static void SaveModels(GrpoTrainer trainer, string folder)
    {
        if (trainer.Reference is { } reference) SafeTensors.Write(Path.Combine(folder, ReferenceFile), reference.Parameters);
        if (trainer.InitialPolicy is { } initial) SafeTensors.Write(Path.Combine(folder, InitialFile), initial.Parameters);
    }

    private static void RestoreModels(GrpoTrainer trainer, string folder)
    {
        foreach (var (model, file, why) in new[] { (trainer.Reference, ReferenceFile, "--beta > 0"), (trainer.InitialPolicy, InitialFile, "--method rft") })
        {
            if (model == null) continue;
            string path = Path.Combine(folder, file);
            if (!File.Exists(path)) throw new ModelFormatException($"{folder}: no {file}, which {why} needs (was the run started with other settings?)");
            Checkpoint.LoadWeights(path, model);
        }
    }
}
