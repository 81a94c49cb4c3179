// `grpo sft`: supervised warm-up on a task's worked solutions (Rl/SftTrainer.cs), from a fresh model
// of a preset shape or from a checkpoint (--model), saving the result to --out (a model folder, tokenizer included), with
// metrics.jsonl (loss, gradient norm, learning rate per step) and checkpoints in OUT/checkpoints
// for --resume (Cli/TrainingRun.cs: resume is exact, a kill loses at most the steps since the last
// checkpoint, a run stops after --max-bad-steps non-finite steps in a row).
// --model may be a checkpoint of ours or a Hugging Face folder; --task gsm8k reads --data with the
// folder's tokenizer (Cli/TaskChoice.cs), leaving out problems whose prompt and solution exceed the context.
// The shipped warm start (Grpo/WarmStart/arithmetic-small) was made by this command; the README gives
// the exact line.
using Grpo.Compute;
using System.CommandLine;
using System.ComponentModel;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Model;
using Grpo.Optim;
using Grpo.Rl;
using Grpo.Sampling;
using Grpo.Tasks;
using Spectre.Console;

namespace Grpo.Cli;

public sealed class SftSettings
{
    [Description("task: arithmetic (built in) or gsm8k")]
    public string Task { get; set; } = "arithmetic";
    [Description("arithmetic difficulty: easy or hard")]
    public ArithmeticDifficulty Difficulty { get; set; } = ArithmeticDifficulty.Easy;
    [Description("model shape for a fresh model: tiny, small, cpu-bench, ...")]
    public string Preset { get; set; } = "small";
    [Description("optimiser steps")]
    public int Steps { get; set; } = 1200;
    [Description("problems per step")]
    public int BatchSize { get; set; } = 32;
    [Description("peak learning rate")]
    public float LearningRate { get; set; } = 7e-3f;
    [Description("final learning rate of the cosine decay")]
    public float MinLearningRate { get; set; } = 3e-4f;
    [Description("learning-rate warm-up steps")]
    public int WarmupSteps { get; set; } = 50;
    [Description("AdamW weight decay")]
    public float WeightDecay { get; set; } = 0.01f;
    [Description("global gradient-norm clip")]
    public float MaxGradNorm { get; set; } = 1f;
    [Description("random seed (initialisation and problems)")]
    public ulong Seed { get; set; } = 1;
    [Description("context length (most tokens of prompt + solution) of a fresh model; 0: the preset's")]
    public int ContextLength { get; set; } = 0;
    [Description("matmul precision of the linear layers: fp32 or bf16 (bf16 operands, fp32 sums; weights and AdamW stay fp32)")]
    public Grpo.Ops.MatMulPrecision Precision { get; set; } = Grpo.Ops.MatMulPrecision.Fp32;

    /// <summary>Checks ranges; throws ArgumentException with one line naming the setting.</summary>
    public void Validate()
    {
        if (Steps < 1) throw new ArgumentException($"--steps must be at least 1 (got {Steps})");
        if (BatchSize < 1) throw new ArgumentException($"--batch-size must be at least 1 (got {BatchSize})");
        if (!(LearningRate >= 0) || !float.IsFinite(LearningRate)) throw new ArgumentException($"--learning-rate must be a finite number >= 0 (got {LearningRate})");
        if (!(MinLearningRate >= 0) || MinLearningRate > LearningRate) throw new ArgumentException($"--min-learning-rate must be in [0, --learning-rate] (got {MinLearningRate})");
        if (WarmupSteps < 0 || WarmupSteps >= Steps) throw new ArgumentException($"--warmup-steps must be in [0, --steps) (got {WarmupSteps} with --steps {Steps})");
        if (!(WeightDecay >= 0) || !float.IsFinite(WeightDecay)) throw new ArgumentException($"--weight-decay must be a finite number >= 0 (got {WeightDecay})");
        if (!(MaxGradNorm > 0)) throw new ArgumentException($"--max-grad-norm must be > 0 (got {MaxGradNorm})");
        if (ContextLength < 0) throw new ArgumentException($"--context-length must be >= 0 (got {ContextLength})");
    }
}

public static class SftCommand
{
    public static Command Create()
    {
        var command = new Command("sft", "Supervised fine-tuning on a task's worked solutions (the warm-up before GRPO), from a fresh model or a model folder");
        var model = new Option<string?>("--model") { Description = "start from this model folder (ours or Hugging Face's) instead of a fresh model" };
        var output = new Option<string>("--out") { Description = "folder for the final model, metrics.jsonl and checkpoints/", DefaultValueFactory = _ => "runs/sft" };
        var data = new Option<string?>("--data") { Description = "for --task gsm8k: a folder with train.jsonl and test.jsonl, or a JSONL file of training problems" };
        var device = DeviceOption.Create();
        command.Options.Add(model);
        command.Options.Add(output);
        command.Options.Add(data);
        command.Options.Add(device);
        var binder = new SettingsBinder<SftSettings>(command);
        var run = new RunOptionSet(command);
        command.SetAction(parse => CliErrors.Run(parse, () =>
        {
            var onDevice = DeviceOption.OpenForRun(parse.GetValue(device)!);
            var settings = binder.Bind(parse);
            settings.Validate();
            var runOptions = run.Bind(parse, parse.GetValue(output)!);
            runOptions.Validate();
            string? folder = parse.GetValue(model);
            var (start, modelTokenizer) = folder is null ? (null, null) : ModelFolder.Load(folder);
            int context = start?.Config.MaxSeqLen ?? (settings.ContextLength > 0 ? settings.ContextLength
                : TransformerConfig.Presets.TryGetValue(settings.Preset, out var shape) ? shape.MaxSeqLen : int.MaxValue);
            var (task, tokenizer, note) = TaskChoice.Create(settings.Task, parse.GetValue(data), TaskUse.Training, modelTokenizer, folder,
                new ContextBudget(context, MaxNewTokens: null), settings.Difficulty);
            if (note is not null) parse.InvocationConfiguration.Error.WriteLine($"note: {note}");
            Train(settings, task, tokenizer, start, runOptions, out _, onDevice);
            return 0;
        }));
        return command;
    }

    /// <summary>Runs SFT with a progress bar and saves the final model to outDir (no periodic checkpoints, no resume).</summary>
    public static Transformer Train(SftSettings settings, IRlTask task, ITokenizer tokenizer, Transformer? startFrom, string outDir, out double seconds) =>
        Train(settings, task, tokenizer, startFrom, new RunOptions(outDir), out seconds);

    /// <summary>Runs SFT with a progress bar, metrics.jsonl and checkpoints in run.OutDir (resuming when asked);
    /// saves the final model to run.OutDir. Prints where it resumed, stopped or finished.</summary>
    public static Transformer Train(SftSettings settings, IRlTask task, ITokenizer tokenizer, Transformer? startFrom, RunOptions run, out double seconds,
        Device? device = null)
    {
        var watch = Stopwatch.StartNew();
        settings.Validate();
        var training = new TrainingRun(run);
        Transformer model;
        if (startFrom != null) model = startFrom;
        else
        {
            if (!TransformerConfig.Presets.TryGetValue(settings.Preset, out var preset))
                throw new ArgumentException($"unknown preset '{settings.Preset}' (expected {string.Join(", ", TransformerConfig.Presets.Keys)})");
            var config = preset with { VocabSize = tokenizer.VocabSize };
            if (settings.ContextLength > 0) config = config with { MaxSeqLen = settings.ContextLength };
            model = new Transformer(config, settings.Seed);
        }
        if (model.Config.VocabSize < tokenizer.VocabSize)
            throw new ArgumentException($"the model's vocabulary ({model.Config.VocabSize}) is smaller than the tokenizer's ({tokenizer.VocabSize})");
        model = model.To(device ?? Device.Cpu);
        model.Precision = settings.Precision;
        var optimizer = new AdamW(model.Parameters, settings.LearningRate, weightDecay: settings.WeightDecay);
        var schedule = LrSchedule.WarmupCosine(settings.LearningRate, settings.MinLearningRate, settings.WarmupSteps, settings.Steps);
        var trainer = new SftTrainer(model, optimizer, schedule, tokenizer.Pad, settings.MaxGradNorm);
        var rng = new Rng(settings.Seed);
        int firstStep = training.Start(model, optimizer, rng);
        JsonObject Extra(int steps) => new() { ["task"] = task.Name, ["alphabet"] = (tokenizer as CharTokenizer)?.Alphabet, ["sftSteps"] = steps };

        if (firstStep >= settings.Steps)
        {
            Checkpoint.Save(run.OutDir, model, optimizer, rng, Extra(firstStep), tokenizer);
            seconds = watch.Elapsed.TotalSeconds;
            AnsiConsole.MarkupLine($"SFT: the run in [bold]{Markup.Escape(run.OutDir)}[/] is already done ({firstStep} of {settings.Steps} steps); final model in [bold]{Markup.Escape(run.OutDir)}[/]");
            return model;
        }
        bool stoppedEarly = false;
        double emaLoss = double.NaN;
        using (var log = training.OpenMetrics())
        {
            Progress.Run($"SFT ({model.Config.ParameterCount() / 1e6:F2}M parameters)", settings.Steps, advance =>
            {
                for (int step = firstStep; step < settings.Steps; step++)
                {
                    var problems = Enumerable.Range(0, settings.BatchSize).Select(_ => task.SampleTraining(rng)).ToArray();
                    var prompts = problems.Select(p => tokenizer.Encode(p.Prompt, addBos: true)).ToArray();
                    var completions = problems.Select(p => tokenizer.Encode(p.Solution, addEos: true)).ToArray();
                    int longest = prompts.Zip(completions, (p, c) => p.Length + c.Length).Max();
                    if (longest > model.Config.MaxSeqLen)
                        throw new ArgumentException($"step {step + 1}: a problem's prompt and solution take {longest} tokens, more than the model's context of {model.Config.MaxSeqLen} (a fresh model takes --context-length)");
                    var result = trainer.Step(prompts, completions);
                    // The line goes out before the checkpoint: metrics.jsonl never lacks a step a checkpoint holds.
                    log.WriteLine(JsonSerializer.Serialize(new
                    {
                        step = step + 1, loss = result.Loss, gradNorm = result.GradNorm, learningRate = result.LearningRate,
                        tokens = result.Tokens, skipped = result.Skipped,
                    }, TrainingRun.MetricsJson));
                    log.Flush();
                    training.Record(step + 1, result.Skipped);
                    if (training.CheckpointDue(step + 1, settings.Steps)) training.Save(step + 1, model, optimizer, rng, Extra(step + 1), tokenizer: tokenizer);
                    if (!result.Skipped) emaLoss = double.IsNaN(emaLoss) ? result.Loss : 0.95 * emaLoss + 0.05 * result.Loss;
                    advance($"loss {emaLoss:F3}");
                    if (training.StopsAfter(step + 1) && step + 1 < settings.Steps) { stoppedEarly = true; break; }
                }
            }, start: firstStep);
        }
        seconds = watch.Elapsed.TotalSeconds;
        if (stoppedEarly)
        {
            AnsiConsole.MarkupLine($"SFT stopped after step {training.LastSaved} as asked (--stop-after); --resume continues from {Markup.Escape(CheckpointStore.FolderFor(run.OutDir, training.LastSaved))}");
            return model;
        }
        Checkpoint.Save(run.OutDir, model, optimizer, rng, Extra(settings.Steps), tokenizer);
        string skipped = training.SkippedSteps > 0 ? $" ({training.SkippedSteps} steps skipped for a non-finite loss or gradient)" : "";
        AnsiConsole.MarkupLine($"SFT done in {seconds:F0} s{skipped}; final model in [bold]{Markup.Escape(run.OutDir)}[/]");
        return model;
    }
}
