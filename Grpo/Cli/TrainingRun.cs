// A training run's folder and the habits that make a long run safe to stop, shared by `sft` and `grpo`:
//
//   OUT/metrics.jsonl          one JSON object a line per step, {"step": n, ...}, flushed as written
//   OUT/checkpoints/step-N/    every --checkpoint-every steps and at the end, the last
//                              --keep-checkpoints kept (Model/CheckpointStore: atomic, SHA-256 manifest)
//
// --resume continues from the newest complete checkpoint: weights, AdamW moments and step, RNG state,
// the loop's step, and whatever the command adds (GRPO: its reference and initial models). With no
// checkpoint in OUT it says so in one line and starts fresh, so a job script can always pass --resume.
// A run whose newest checkpoint holds every step says it is done (exit 0). Without --resume, a
// folder that already holds checkpoints is refused: starting over would mix two runs in one folder.
// metrics.jsonl is cut back to the checkpoint's step on resume and then appended, so no step appears
// twice; a step's line is written BEFORE its checkpoint, so the file never lacks a step that a
// checkpoint holds. A kill loses at most the steps since the last checkpoint.
// Non-finite steps: the trainers skip a step whose loss or gradient norm is NaN or infinite (weights
// and AdamW untouched); this counts them and stops the run with TrainingStoppedException after
// --max-bad-steps in a row. A state with a non-finite weight or moment is never saved: the run stops
// instead, with the last good checkpoint intact.
// --stop-after N stops cleanly after step N with a checkpoint (a time-limited job slot; --resume goes on).
// Tests: Grpo.Tests/Reliability/ResumeTests.cs, KillTests.cs, CommandInputTests.cs.
using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Model;
using Grpo.Tasks;
using Grpo.Optim;
using Grpo.Rl;
using Grpo.Sampling;
using Spectre.Console;

namespace Grpo.Cli;

/// <summary>A run that cannot go on (too many non-finite steps in a row, or a non-finite weight to save): one line, exit code 1.</summary>
public sealed class TrainingStoppedException(string message) : Exception(message);

/// <summary>Where a run keeps its work and how often; the defaults are what the library callers (demo) get.</summary>
public sealed record RunOptions(string OutDir, int CheckpointEvery = 0, bool Resume = false, int KeepCheckpoints = 3,
    int MaxBadSteps = 5, int StopAfter = 0)
{
    public void Validate()
    {
        if (CheckpointEvery < 0) throw new ArgumentException($"--checkpoint-every must be >= 0 (got {CheckpointEvery})");
        if (KeepCheckpoints < 1) throw new ArgumentException($"--keep-checkpoints must be at least 1 (got {KeepCheckpoints})");
        if (MaxBadSteps < 1) throw new ArgumentException($"--max-bad-steps must be at least 1 (got {MaxBadSteps})");
        if (StopAfter < 0) throw new ArgumentException($"--stop-after must be >= 0 (got {StopAfter})");
    }
}

/// <summary>The options of RunOptions on a command (its --out stays the command's own).</summary>
public sealed class RunOptionSet
{
    private readonly Option<int> every = new("--checkpoint-every") { Description = "save a checkpoint in OUT/checkpoints every N steps (0: only at the end)", DefaultValueFactory = _ => 25 };
    private readonly Option<bool> resume = new("--resume") { Description = "continue from the newest complete checkpoint in OUT (starts fresh when there is none)" };
    private readonly Option<int> keep = new("--keep-checkpoints") { Description = "how many checkpoints to keep", DefaultValueFactory = _ => 3 };
    private readonly Option<int> maxBad = new("--max-bad-steps") { Description = "stop after this many steps in a row with a non-finite loss or gradient", DefaultValueFactory = _ => 5 };
    private readonly Option<int> stopAfter = new("--stop-after") { Description = "stop with a checkpoint after this step (0: run to the end); --resume continues", DefaultValueFactory = _ => 0 };

    public RunOptionSet(Command command)
    {
        foreach (var option in new Option[] { every, resume, keep, maxBad, stopAfter }) command.Options.Add(option);
    }

    public RunOptions Bind(ParseResult parse, string outDir) =>
        new(outDir, parse.GetValue(every), parse.GetValue(resume), parse.GetValue(keep), parse.GetValue(maxBad), parse.GetValue(stopAfter));
}

public sealed class TrainingRun
{
    /// <summary>How every training command writes a metrics.jsonl line: one line, camelCase, and a
    /// skipped step's NaN loss as "NaN" rather than an exception.</summary>
    public static readonly JsonSerializerOptions MetricsJson = new(SettingsBinder<GrpoSettings>.Json)
    {
        WriteIndented = false,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public const string MetricsFile = "metrics.jsonl";
    private const string BadStepsKey = "badStepsInARow";

    private readonly RunOptions options;
    private int badInARow;

    /// <summary>Steps skipped for a non-finite loss or gradient in this process.</summary>
    public int SkippedSteps { get; private set; }
    /// <summary>The step of the newest checkpoint this run saved or resumed from (-1: none).</summary>
    public int LastSaved { get; private set; } = -1;
    public string OutDir => options.OutDir;
    public string MetricsPath => Path.Combine(options.OutDir, MetricsFile);

    public TrainingRun(RunOptions options)
    {
        options.Validate();
        this.options = options;
    }

    /// <summary>The step to start from: 0, or with --resume the newest checkpoint's, whose state is
    /// loaded into the model, optimizer and RNG (then <paramref name="restoreMore"/> reads the command's
    /// own files from its folder). Cuts metrics.jsonl back to that step.</summary>
    public int Start(Transformer model, AdamW optimizer, Rng rng, Action<string>? restoreMore = null)
    {
        Directory.CreateDirectory(options.OutDir);
        int step = 0;
        var found = CheckpointStore.Newest(options.OutDir);
        if (!options.Resume)
        {
            if (found.Path != null)
                throw new ArgumentException($"{options.OutDir} already holds a run (checkpoint of step {found.Step}): pass --resume to continue it, or choose another --out");
        }
        else
        {
            foreach (var line in found.Skipped) Say($"[yellow]passed over {Markup.Escape(line)}[/]");
            if (found.Path == null)
                Say($"no checkpoint in {Markup.Escape(Path.Combine(options.OutDir, CheckpointStore.CheckpointsFolder))} to resume from: starting fresh");
            else
            {
                var extra = CheckpointStore.Load(found.Path, model, optimizer, rng);
                badInARow = extra?[BadStepsKey]?.GetValue<int>() ?? 0;
                restoreMore?.Invoke(found.Path);
                step = found.Step;
                LastSaved = step;
                Say($"resuming from {Markup.Escape(found.Path)} (step {step})");
            }
        }
        TrimMetrics(step);
        return step;
    }

    /// <summary>metrics.jsonl for appending (one line a step, flushed by the caller).</summary>
    public StreamWriter OpenMetrics() => new(MetricsPath, append: true);

    /// <summary>Counts a skipped step; throws TrainingStoppedException after MaxBadSteps in a row.</summary>
    public void Record(int step, bool skipped)
    {
        if (!skipped) { badInARow = 0; return; }
        SkippedSteps++;
        badInARow++;
        if (badInARow >= options.MaxBadSteps)
            throw new TrainingStoppedException($"stopped at step {step}: {badInARow} steps in a row had a non-finite loss or gradient (each skipped, weights untouched); {LastGood()}; try a lower --learning-rate or --max-grad-norm");
    }

    /// <summary>Whether step (1-based, just done) gets a checkpoint: every CheckpointEvery, the last step, and --stop-after's.</summary>
    public bool CheckpointDue(int step, int totalSteps) =>
        step >= totalSteps || options.CheckpointEvery > 0 && step % options.CheckpointEvery == 0 || StopsAfter(step);

    /// <summary>Whether --stop-after asks to stop once this step is done.</summary>
    public bool StopsAfter(int step) => options.StopAfter > 0 && step == options.StopAfter;

    /// <summary>Saves a checkpoint of the state after <paramref name="step"/> steps, or stops the run
    /// (TrainingStoppedException) when a weight or moment is not finite.</summary>
    public void Save(int step, Transformer model, AdamW optimizer, Rng rng, JsonObject extra, Action<string>? writeMore = null, ITokenizer? tokenizer = null)
    {
        if (CheckpointStore.NonFiniteValue(model, optimizer) is { } problem)
            throw new TrainingStoppedException($"stopped at step {step}: {problem}, so it was not saved; {LastGood()}; try a lower --learning-rate");
        extra[BadStepsKey] = badInARow;
        CheckpointStore.Save(options.OutDir, step, model, optimizer, rng, extra, options.KeepCheckpoints, tokenizer, writeMore);
        LastSaved = step;
    }

    private string LastGood() => LastSaved < 0
        ? "no checkpoint was saved"
        : $"the last good checkpoint is {CheckpointStore.FolderFor(options.OutDir, LastSaved)}";

    /// <summary>Keeps the lines of steps 1..step (a line cut short by a kill, or of a later step, goes).</summary>
    private void TrimMetrics(int step)
    {
        if (!File.Exists(MetricsPath)) return;
        var kept = new List<string>();
        foreach (var line in File.ReadLines(MetricsPath))
        {
            int? lineStep = null;
            try { lineStep = (JsonNode.Parse(line) as JsonObject)?["step"]?.GetValue<int>(); }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException) { }
            if (lineStep is not int s || s > step) break;
            kept.Add(line);
        }
        SafeFile.WriteAllTextAtomic(MetricsPath, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
    }

    private static void Say(string markup) => AnsiConsole.MarkupLine(markup);
}
