// `grpo sft`: supervised warm-up on a task's worked solutions (Rl/SftTrainer.cs), from a fresh model
// of a preset shape or from a model folder (--model: a checkpoint of ours or a Hugging Face folder),
// saving the result to --out with its tokenizer. --task gsm8k reads --data with the folder's
// tokenizer (Cli/TaskChoice.cs), leaving out problems whose prompt and solution exceed the context.
// The shipped warm start (Grpo/WarmStart/arithmetic-small) was made by this command; the README gives
// the exact line.
using System.CommandLine;
using System.ComponentModel;
using System.Diagnostics;
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
}

public static class SftCommand
{
    public static Command Create()
    {
        var command = new Command("sft", "Supervised fine-tuning on a task's worked solutions (the warm-up before GRPO), from a fresh model or a model folder");
        var model = new Option<string?>("--model") { Description = "start from this model folder (ours or Hugging Face's) instead of a fresh model" };
        var output = new Option<string>("--out") { Description = "folder to save the checkpoint in", DefaultValueFactory = _ => "runs/sft" };
        var data = new Option<string?>("--data") { Description = "for --task gsm8k: a folder with train.jsonl and test.jsonl, or a JSONL file of training problems" };
        var device = DeviceOption.CreateCpuOnly();
        command.Options.Add(model);
        command.Options.Add(output);
        command.Options.Add(data);
        command.Options.Add(device);
        var binder = new SettingsBinder<SftSettings>(command);
        command.SetAction(parse => CliErrors.Run(parse, () =>
        {
            DeviceOption.ResolveCpuOnly(parse.GetValue(device)!, parse.InvocationConfiguration.Error);
            var settings = binder.Bind(parse);
            string? folder = parse.GetValue(model);
            var (start, modelTokenizer) = folder is null ? (null, null) : ModelFolder.Load(folder);
            int context = start?.Config.MaxSeqLen ?? (TransformerConfig.Presets.TryGetValue(settings.Preset, out var shape) ? shape.MaxSeqLen : int.MaxValue);
            var (task, tokenizer, note) = TaskChoice.Create(settings.Task, parse.GetValue(data), TaskUse.Training, modelTokenizer, folder,
                new ContextBudget(context, MaxNewTokens: null), settings.Difficulty);
            if (note is not null) parse.InvocationConfiguration.Error.WriteLine($"note: {note}");
            var transformer = Train(settings, task, tokenizer, start, parse.GetValue(output)!, out var seconds);
            AnsiConsole.MarkupLine($"SFT done in {seconds:F0} s; checkpoint in [bold]{Markup.Escape(parse.GetValue(output)!)}[/]");
            return 0;
        }));
        return command;
    }

    /// <summary>Runs SFT with a progress bar (on startFrom, or a fresh model of the preset when null) and saves the checkpoint, tokenizer included, to outDir.</summary>
    public static Transformer Train(SftSettings settings, IRlTask task, ITokenizer tokenizer, Transformer? startFrom, string outDir, out double seconds)
    {
        var watch = Stopwatch.StartNew();
        if (settings.Steps < 1) throw new ArgumentException($"--steps must be at least 1 (got {settings.Steps})");
        if (settings.BatchSize < 1) throw new ArgumentException($"--batch-size must be at least 1 (got {settings.BatchSize})");
        Transformer model;
        if (startFrom != null) model = startFrom;
        else
        {
            if (!TransformerConfig.Presets.TryGetValue(settings.Preset, out var preset))
                throw new ArgumentException($"unknown preset '{settings.Preset}' (expected {string.Join(", ", TransformerConfig.Presets.Keys)})");
            model = new Transformer(preset with { VocabSize = tokenizer.VocabSize }, settings.Seed);
        }
        if (model.Config.VocabSize < tokenizer.VocabSize)
            throw new ArgumentException($"the model's vocabulary ({model.Config.VocabSize}) is smaller than the tokenizer's ({tokenizer.VocabSize})");
        var optimizer = new AdamW(model.Parameters, settings.LearningRate, weightDecay: settings.WeightDecay);
        var schedule = LrSchedule.WarmupCosine(settings.LearningRate, settings.MinLearningRate, settings.WarmupSteps, settings.Steps);
        var trainer = new SftTrainer(model, optimizer, schedule, tokenizer.Pad, settings.MaxGradNorm);
        var rng = new Rng(settings.Seed);
        double emaLoss = double.NaN;
        Progress.Run($"SFT ({model.Config.ParameterCount() / 1e6:F2}M parameters)", settings.Steps, advance =>
        {
            for (int step = 0; step < settings.Steps; step++)
            {
                var problems = Enumerable.Range(0, settings.BatchSize).Select(_ => task.SampleTraining(rng)).ToArray();
                var prompts = problems.Select(p => tokenizer.Encode(p.Prompt, addBos: true)).ToArray();
                var completions = problems.Select(p => tokenizer.Encode(p.Solution, addEos: true)).ToArray();
                var result = trainer.Step(prompts, completions);
                emaLoss = double.IsNaN(emaLoss) ? result.Loss : 0.95 * emaLoss + 0.05 * result.Loss;
                advance($"loss {emaLoss:F3}");
            }
        });
        var extra = new JsonObject { ["task"] = task.Name, ["alphabet"] = (tokenizer as CharTokenizer)?.Alphabet, ["sftSteps"] = settings.Steps };
        Checkpoint.Save(outDir, model, optimizer, rng, extra, tokenizer);
        seconds = watch.Elapsed.TotalSeconds;
        return model;
    }
}
