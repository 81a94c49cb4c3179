// `grpo demo` (also what `dotnet run --project Grpo -c Release` runs with no command): the main job.
// 1. the warm start: the shipped SFT checkpoint (Grpo/WarmStart/arithmetic-small), or with
//    --from-scratch an SFT run of our own;
// 2. held-out evaluation (greedy, pass@k, maj@k);
// 3. GRPO on the built-in arithmetic task;
// 4. the same evaluation again, a before/after table (the paper's Figure 7: RL raises maj@K and
//    pass@1 more than pass@K), and a run folder runs/<name>/ with metrics.jsonl, summary.json,
//    report.md, PNG plots and the final checkpoint.
using Grpo.Compute;
using System.CommandLine;
using System.ComponentModel;
using System.Diagnostics;
using Grpo.Model;
using Grpo.Rl;
using Grpo.Sampling;
using Grpo.Tasks;
using Spectre.Console;

namespace Grpo.Cli;

public sealed class DemoSettings
{
    [Description("run SFT first instead of loading the shipped warm start")]
    public bool FromScratch { get; set; } = false;
    [Description("SFT steps when --from-scratch")]
    public int SftSteps { get; set; } = 1200;
    [Description("held-out problems evaluated before and after")]
    public int EvalProblems { get; set; } = 500;
    [Description("samples per held-out problem (pass@k and maj@k for k up to this)")]
    public int EvalSamples { get; set; } = 16;
    [Description("run name: the folder is runs/<name> (none: the date and time)")]
    public string Name { get; set; } = "";
}

public static class DemoCommand
{
    public const string WarmStartFolder = "WarmStart/arithmetic-small";

    public static Command Create()
    {
        var command = new Command("demo", "The main job (what runs with no command): warm start, evaluate, GRPO on the built-in task, evaluate again, report");
        var demo = new SettingsBinder<DemoSettings>(command);
        var grpo = new SettingsBinder<GrpoSettings>(command, "Method", "Supervision");
        var device = DeviceOption.Create();
        command.Options.Add(device);
        command.SetAction(parse => CliErrors.Run(parse, () =>
            Run(demo.Bind(parse), grpo.Bind(parse), DeviceOption.OpenForRun(parse.GetValue(device)!))));
        return command;
    }

    /// <summary>The main job on <paramref name="device"/> (default the CPU; recorded in summary.json).</summary>
    public static int Run(DemoSettings demo, GrpoSettings settings, Device? device = null)
    {
        device ??= Device.Cpu;
        var watch = Stopwatch.StartNew();
        settings.Validate();
        if (demo.EvalSamples < 1 || demo.EvalProblems < 1) throw new ArgumentException("--eval-samples and --eval-problems must be at least 1");
        if (demo.FromScratch && demo.SftSteps < 1) throw new ArgumentException($"--sft-steps must be at least 1 (got {demo.SftSteps})");
        var (task, tokenizer, _) = TaskChoice.Create("arithmetic", null, TaskUse.Training, null, null);
        string name = demo.Name.Length > 0 ? demo.Name : DateTime.Now.ToString("yyyyMMdd-HHmmss");
        string runDir = Path.Combine("runs", name);
        Directory.CreateDirectory(runDir);
        AnsiConsole.MarkupLine($"[bold]Grpo demo[/]: GRPO on {task.Name} word problems, device {Markup.Escape(device.Description)}, run folder [bold]{Markup.Escape(runDir)}[/]");

        Transformer policy;
        if (demo.FromScratch)
        {
            // The warm-up is at most a tenth of the run, so a short --sft-steps still has room to train.
            var sft = new SftSettings { Steps = demo.SftSteps, WarmupSteps = Math.Min(new SftSettings().WarmupSteps, demo.SftSteps / 10), Precision = settings.Precision };
            policy = SftCommand.Train(sft, task, tokenizer, null, new RunOptions(Path.Combine(runDir, "sft")), out _, device);
        }
        else
        {
            string warmStart = Path.Combine(AppContext.BaseDirectory, WarmStartFolder);
            if (!Directory.Exists(warmStart)) throw new ArgumentException($"the shipped warm start is missing ({warmStart}); run with --from-scratch");
            policy = Checkpoint.LoadModel(warmStart).To(device);
            AnsiConsole.MarkupLine($"warm start: {Markup.Escape(WarmStartFolder)} ({policy.Config.ParameterCount() / 1e6:F2}M parameters, made by `grpo sft`, see README)");
        }

        policy.Precision = settings.Precision;   // the evaluation before GRPO multiplies as the training and the one after do
        var heldOut = task.HeldOut(demo.EvalProblems);
        var ks = new[] { 1, 4, 16, 64 }.Where(k => k <= demo.EvalSamples).ToArray();
        EvalResult Evaluate(string title)
        {
            EvalResult? result = null;
            Progress.RunCounted(title, progress =>
                result = Evaluator.Run(policy, task, tokenizer, heldOut, demo.EvalSamples, ks, settings.MaxNewTokens, new Rng(7), progress));
            return result!;
        }
        var before = Evaluate($"evaluating the warm start on {heldOut.Count} held-out problems");
        var metrics = GrpoCommand.Train(policy, task, tokenizer, settings, runDir);
        var after = Evaluate("evaluating after GRPO");

        AnsiConsole.Write(EvalCommand.Table(("before GRPO", before), ("after GRPO", after)));
        double seconds = watch.Elapsed.TotalSeconds;
        RunReport.Write(runDir, device.Name, seconds, settings, before, after, metrics);
        AnsiConsole.MarkupLine($"pass@1 {100 * before.PassAt1:F1}% -> {100 * after.PassAt1:F1}% ({100 * (after.PassAt1 - before.PassAt1):+0.0;-0.0} points) in {seconds:F0} s");
        AnsiConsole.MarkupLine($"run folder: [bold]{Markup.Escape(Path.GetFullPath(runDir))}[/] (metrics.jsonl, summary.json, report.md, plots, final checkpoint)");
        return 0;
    }
}
