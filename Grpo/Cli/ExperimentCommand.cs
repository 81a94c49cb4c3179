// `grpo experiment paradigms|iterative`: DeepSeekMath's section 5.2 analyses at small scale, each
// from one SFT checkpoint (the shipped warm start by default) with the same budget of sampled
// completions per arm (steps x questions x G), held-out accuracy measured every few steps:
//   paradigms  RFT, Online RFT, GRPO with outcome supervision, GRPO with process supervision
//              (the paper's Figure 5, where GRPO+PS > GRPO+OS > Online RFT > RFT)
//   iterative  GRPO with beta > 0 and the reference model reset to the policy every few steps (an
//              iteration of Algorithm 1) against a reference fixed at the start (Figure 6's idea)
// Each arm trains a fresh copy of the start model (Rl/TrainingCurve.cs); the run folder runs/<name>/
// gets summary.json, report.md, PNG curves and each arm's metrics.jsonl (ExperimentReport.cs).
// --device as demo takes it (DeviceOption.OpenForRun): every arm's model lives there; summary.json
// records the device.
// Tests: Grpo.Tests/Cli/ExperimentCommandTests.cs.
using Grpo.Compute;
using System.CommandLine;
using System.ComponentModel;
using System.Diagnostics;
using System.Text.Json;
using Grpo.Model;
using Grpo.Rl;
using Grpo.Tasks;
using Spectre.Console;

namespace Grpo.Cli;

/// <summary>What both experiments share. Defaults are sized to finish in about 15-20 minutes on two CPU cores.</summary>
public class ExperimentSettings
{
    [Description("start checkpoint (empty: the shipped warm start, WarmStart/arithmetic-small)")]
    public string Model { get; set; } = "";
    [Description("run name: the folder is runs/<name> (empty: the experiment and the time)")]
    public string Name { get; set; } = "";
    [Description("training steps per arm")]
    public int Steps { get; set; } = 120;
    [Description("questions sampled per step")]
    public int QuestionsPerStep { get; set; } = 8;
    [Description("G, outputs sampled per question")]
    public int GroupSize { get; set; } = 16;
    [Description("peak learning rate (constant)")]
    public float LearningRate { get; set; } = 1e-4f;
    [Description("mu, gradient steps per batch of samples")]
    public int Mu { get; set; } = 1;
    [Description("beta, the KL coefficient (0: no reference model)")]
    public float Beta { get; set; } = 0f;
    [Description("loss aggregation: sequence (the paper), token (DAPO) or constant (Dr. GRPO)")]
    public LossAggregation Aggregation { get; set; } = LossAggregation.Token;
    [Description("held-out evaluation every this many steps")]
    public int EvalEvery { get; set; } = 20;
    [Description("held-out problems of each evaluation during training")]
    public int CurveProblems { get; set; } = 200;
    [Description("samples per problem of each evaluation during training")]
    public int CurveSamples { get; set; } = 4;
    [Description("held-out problems of the final evaluation")]
    public int FinalProblems { get; set; } = 500;
    [Description("samples per problem of the final evaluation")]
    public int FinalSamples { get; set; } = 16;
    [Description("most tokens a completion may have")]
    public int MaxNewTokens { get; set; } = 48;
    [Description("random seed of the training loop (the same for every arm)")]
    public ulong Seed { get; set; } = 1;

    /// <summary>The GRPO settings every arm starts from.</summary>
    public GrpoSettings Base() => new()
    {
        Steps = Steps, QuestionsPerStep = QuestionsPerStep, GroupSize = GroupSize, LearningRate = LearningRate,
        Mu = Mu, Beta = Beta, Aggregation = Aggregation, MaxNewTokens = MaxNewTokens, Seed = Seed,
    };

    public CurveOptions Curve() => new(EvalEvery, CurveProblems, CurveSamples, FinalProblems, FinalSamples, MaxNewTokens);
}

public sealed class ParadigmsSettings : ExperimentSettings
{
    [Description("arms to run, comma-separated: rft, online-rft, grpo-outcome, grpo-process")]
    public string Arms { get; set; } = "rft,online-rft,grpo-outcome,grpo-process";
}

public sealed class IterativeSettings : ExperimentSettings
{
    // beta 1, not the paper's 0.04: measured here, the per-token KL (k3) to the start model stays near
    // 0.003 nats after 30 steps at lr 1e-4, so a small beta leaves the reference with nothing to do and
    // the two arms the same; at beta 1 its pull (beta * (1 - pi_ref/pi) per token) is a visible
    // fraction of the advantages' push on the tokens that moved.
    public IterativeSettings()
    {
        Steps = 200;
        Beta = 1f;
        EvalEvery = 25;
        Aggregation = LossAggregation.Sequence;
    }

    [Description("steps per iteration of the reset arm: its reference model is reset to the policy this often")]
    public int ResetEvery { get; set; } = 50;
}

public static class ExperimentCommand
{
    public const string ParadigmsClaim = "DeepSeekMath Figure 5 (section 5.2.2): GRPO+PS > GRPO+OS > Online RFT > RFT on GSM8K and MATH";
    public const string IterativeClaim = "DeepSeekMath Figure 6 (section 4.2, 5.2): iterative RL (reference and reward model renewed) beats one iteration";

    public static Command Create()
    {
        var command = new Command("experiment", "The paper's analyses at small scale: paradigms (Figure 5), iterative (Figure 6)");
        var paradigms = new Command("paradigms", "RFT, Online RFT, GRPO+outcome, GRPO+process from one checkpoint, same budget; held-out accuracy vs steps");
        var paradigmsBinder = new SettingsBinder<ParadigmsSettings>(paradigms);
        var paradigmsDevice = DeviceOption.Create();
        paradigms.Options.Add(paradigmsDevice);
        paradigms.SetAction(parse => CliErrors.Run(parse, () =>
            RunParadigms(paradigmsBinder.Bind(parse), DeviceOption.OpenForRun(parse.GetValue(paradigmsDevice)!))));
        var iterative = new Command("iterative", "GRPO with beta > 0: reference reset each iteration vs fixed, same budget; held-out accuracy vs steps");
        var iterativeBinder = new SettingsBinder<IterativeSettings>(iterative);
        var iterativeDevice = DeviceOption.Create();
        iterative.Options.Add(iterativeDevice);
        iterative.SetAction(parse => CliErrors.Run(parse, () =>
            RunIterative(iterativeBinder.Bind(parse), DeviceOption.OpenForRun(parse.GetValue(iterativeDevice)!))));
        command.Subcommands.Add(paradigms);
        command.Subcommands.Add(iterative);
        return command;
    }

    /// <summary>The arms of the paradigms experiment by the names --arms takes.</summary>
    public static readonly IReadOnlyDictionary<string, (string Label, TrainingMethod Method, Supervision Supervision)> ParadigmArms =
        new Dictionary<string, (string, TrainingMethod, Supervision)>
        {
            ["rft"] = ("RFT", TrainingMethod.Rft, Supervision.Outcome),
            ["online-rft"] = ("Online RFT", TrainingMethod.OnlineRft, Supervision.Outcome),
            ["grpo-outcome"] = ("GRPO+OS", TrainingMethod.Grpo, Supervision.Outcome),
            ["grpo-process"] = ("GRPO+PS", TrainingMethod.Grpo, Supervision.Process),
        };

    public static int RunParadigms(ParadigmsSettings experiment, Device? device = null)
    {
        var names = experiment.Arms.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (names.Length == 0) throw new ArgumentException("--arms names no arm");
        var arms = names.Select(n => ParadigmArms.TryGetValue(n.ToLowerInvariant(), out var arm) ? arm
            : throw new ArgumentException($"unknown arm '{n}' (expected {string.Join(", ", ParadigmArms.Keys)})"))
            .Select(a =>
            {
                var settings = experiment.Base();
                settings.Method = a.Method;
                settings.Supervision = a.Supervision;
                return (a.Label, settings);
            }).ToList();
        return Run("paradigms", ParadigmsClaim, experiment, arms, device);
    }

    public static int RunIterative(IterativeSettings experiment, Device? device = null)
    {
        if (!(experiment.Beta > 0)) throw new ArgumentException($"--beta must be > 0 for the iterative experiment (got {experiment.Beta}): with no KL term the reference model plays no part");
        if (experiment.ResetEvery < 1 || experiment.ResetEvery >= experiment.Steps)
            throw new ArgumentException($"--reset-every must be in [1, {experiment.Steps - 1}] (got {experiment.ResetEvery}) so that the reference is reset at least once");
        var fixedReference = experiment.Base();
        var reset = experiment.Base();
        reset.ReferenceResetEvery = experiment.ResetEvery;
        return Run("iterative", IterativeClaim, experiment,
            [("fixed reference", fixedReference), ($"reset every {experiment.ResetEvery}", reset)], device);
    }

    private static int Run(string experimentName, string claim, ExperimentSettings experiment, List<(string Label, GrpoSettings Settings)> arms, Device? device)
    {
        device ??= Device.Cpu;
        var watch = Stopwatch.StartNew();
        var curve = experiment.Curve();
        curve.Validate();
        foreach (var (_, settings) in arms) settings.Validate();
        var (task, tokenizer, _) = TaskChoice.Create("arithmetic", null, TaskUse.Training, null, null);
        string modelFolder = experiment.Model.Length > 0 ? experiment.Model : Path.Combine(AppContext.BaseDirectory, DemoCommand.WarmStartFolder);
        if (!Directory.Exists(modelFolder)) throw new ArgumentException($"checkpoint folder not found: {modelFolder}");
        string name = experiment.Name.Length > 0 ? experiment.Name : $"{experimentName}-{DateTime.Now:yyyyMMdd-HHmmss}";
        string runDir = Path.Combine("runs", name);
        Directory.CreateDirectory(runDir);
        long budget = (long)experiment.Steps * experiment.QuestionsPerStep * experiment.GroupSize;
        AnsiConsole.MarkupLine($"[bold]grpo experiment {experimentName}[/]: {arms.Count} arms x {experiment.Steps} steps x {experiment.QuestionsPerStep} questions x G {experiment.GroupSize} = {budget} sampled completions each, device {Markup.Escape(device.Description)}");
        AnsiConsole.MarkupLine($"start: {Markup.Escape(modelFolder)}; run folder [bold]{Markup.Escape(runDir)}[/]");

        var start = Checkpoint.LoadModel(modelFolder).To(device);
        CurvePoint? startPoint = null;
        EvalResult? before = null;
        Progress.RunCounted($"evaluating the start model ({experiment.CurveProblems} x {experiment.CurveSamples}, then {experiment.FinalProblems} x {experiment.FinalSamples})", progress =>
        {
            startPoint = TrainingCurve.Measure(start, task, tokenizer, curve);
            progress(1, 2);
            before = TrainingCurve.Evaluate(start, task, tokenizer, experiment.FinalProblems, experiment.FinalSamples, curve);
        });

        var results = new List<ArmResult>();
        foreach (var (label, settings) in arms)
        {
            var policy = Checkpoint.LoadModel(modelFolder).To(device);
            string armDir = Path.Combine(runDir, ExperimentReport.Slug(label));
            Directory.CreateDirectory(armDir);
            using var log = new StreamWriter(Path.Combine(armDir, "metrics.jsonl"), append: false);
            ArmResult? result = null;
            Progress.Run(label, settings.Steps, advance =>
                result = TrainingCurve.Run(label, policy, task, tokenizer, settings, curve, startPoint!, onStep: m =>
                {
                    log.WriteLine(JsonSerializer.Serialize(m, TrainingRun.MetricsJson));
                    log.Flush();
                    advance($"reward {m.RewardMean:F2}, kl {m.Kl:F4}");
                }));
            results.Add(result!);
            var last = result!.Curve[^1];
            AnsiConsole.MarkupLine($"{Markup.Escape(label)}: held-out pass@1 ({experiment.CurveProblems} x {experiment.CurveSamples}) {100 * startPoint!.PassAt1:F1}% -> {100 * last.PassAt1:F1}%, final ({experiment.FinalProblems} x {experiment.FinalSamples}) {100 * result.Final.PassAt1:F1}%, {result.Seconds:F0} s");
        }

        double seconds = watch.Elapsed.TotalSeconds;
        AnsiConsole.Write(ExperimentReport.Table(before!, results));
        ExperimentReport.Write(runDir, experimentName, claim, seconds, modelFolder, experiment, before!, results, device.Name);
        AnsiConsole.MarkupLine($"ordering by final pass@1: {Markup.Escape(string.Join(" > ", results.OrderByDescending(r => r.Final.PassAt1).Select(r => r.Name)))}");
        AnsiConsole.MarkupLine($"paper: {Markup.Escape(claim)}");
        AnsiConsole.MarkupLine($"{seconds:F0} s; run folder: [bold]{Markup.Escape(Path.GetFullPath(runDir))}[/] (summary.json, report.md, accuracy.png, each arm's metrics.jsonl)");
        return 0;
    }
}
