// One arm of an experiment (the paper's section 5.2 analyses): RL from a start model with one set of
// settings, the held-out accuracy measured every few steps (the curves of DeepSeekMath's Figures 5
// and 6) and once more, larger, at the end (the table).
//
//   for step = 1..Steps:  trainer.Step()                      (GrpoTrainer: GRPO, Online RFT or RFT)
//     every EvalEvery steps, and after the last:  held-out greedy, pass@1 and maj@k on CurveProblems
//                                                  x CurveSamples (small, so the curve is cheap)
//   at the end:  held-out greedy, pass@k, maj@k on FinalProblems x FinalSamples
//
// Every evaluation draws its samples from a fresh Rng(EvalSeed), so arms are compared on the same
// problems with the same random stream. The step-0 point is the start model's, the same for every
// arm, so the caller measures it once and passes it in. Nothing here writes to the console: progress
// goes out through the callbacks.
// Tests: Grpo.Tests/Cli/ExperimentCommandTests.cs (the experiments at tiny sizes).
using System.Diagnostics;
using Grpo.Model;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Rl;

public sealed record CurveOptions(int EvalEvery, int CurveProblems, int CurveSamples, int FinalProblems, int FinalSamples,
    int MaxNewTokens, ulong EvalSeed = 7)
{
    public void Validate()
    {
        if (EvalEvery < 1) throw new ArgumentException($"--eval-every must be at least 1 (got {EvalEvery})");
        if (CurveProblems < 1 || CurveSamples < 1) throw new ArgumentException($"--curve-problems and --curve-samples must be at least 1 (got {CurveProblems}, {CurveSamples})");
        if (FinalProblems < 1 || FinalSamples < 1) throw new ArgumentException($"--final-problems and --final-samples must be at least 1 (got {FinalProblems}, {FinalSamples})");
    }

    /// <summary>The k of pass@k and maj@k reported for n samples: 1, 4, 16, 64 up to n.</summary>
    public static int[] Ks(int samples) => new[] { 1, 4, 16, 64 }.Where(k => k <= samples).ToArray();
}

/// <summary>A point of a curve: after Step steps (Completions sampled for training so far).</summary>
public sealed record CurvePoint(int Step, long Completions, double Greedy, double PassAt1, double MajAtMaxK, double Seconds);

public sealed record ArmResult(string Name, GrpoSettings Settings, IReadOnlyList<CurvePoint> Curve, EvalResult Final,
    IReadOnlyList<GrpoStepMetrics> Metrics, double Seconds);

public static class TrainingCurve
{
    /// <summary>Held-out evaluation of a model at the curve's size: a point at step 0.</summary>
    public static CurvePoint Measure(Transformer model, IRlTask task, ITokenizer tokenizer, CurveOptions options, int step = 0, long completions = 0)
    {
        var result = Evaluate(model, task, tokenizer, options.CurveProblems, options.CurveSamples, options);
        return new CurvePoint(step, completions, result.Greedy, result.PassAt1, result.MajAtK[CurveOptions.Ks(options.CurveSamples)[^1]], result.Seconds);
    }

    public static EvalResult Evaluate(Transformer model, IRlTask task, ITokenizer tokenizer, int problems, int samples, CurveOptions options) =>
        Evaluator.Run(model, task, tokenizer, task.HeldOut(problems), samples, CurveOptions.Ks(samples), options.MaxNewTokens, new Rng(options.EvalSeed));

    /// <summary>
    /// Trains <paramref name="policy"/> (changed in place) for settings.Steps steps and measures it along
    /// the way. onStep sees each step's metrics; onPhase says what is being done ("training", "evaluating").
    /// </summary>
    public static ArmResult Run(string name, Transformer policy, IRlTask task, ITokenizer tokenizer, GrpoSettings settings,
        CurveOptions options, CurvePoint start, Action<GrpoStepMetrics>? onStep = null, Action<string>? onPhase = null)
    {
        options.Validate();
        var watch = Stopwatch.StartNew();
        var trainer = new GrpoTrainer(policy, task, tokenizer, settings, Rewards.ForTask(task, settings.FormatRewardWeight));
        long perStep = (long)settings.QuestionsPerStep * settings.GroupSize;
        var curve = new List<CurvePoint> { start };
        var metrics = new List<GrpoStepMetrics>();
        for (int step = 1; step <= settings.Steps; step++)
        {
            onPhase?.Invoke("training");
            var m = trainer.Step();
            metrics.Add(m);
            onStep?.Invoke(m);
            if (step % options.EvalEvery == 0 || step == settings.Steps)
            {
                onPhase?.Invoke($"evaluating at step {step}");
                curve.Add(Measure(policy, task, tokenizer, options, step, step * perStep));
            }
        }
        onPhase?.Invoke("final evaluation");
        var final = Evaluate(policy, task, tokenizer, options.FinalProblems, options.FinalSamples, options);
        return new ArmResult(name, settings, curve, final, metrics, watch.Elapsed.TotalSeconds);
    }
}
