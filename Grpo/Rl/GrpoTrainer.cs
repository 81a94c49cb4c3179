// The GRPO loop: DeepSeekMath's Algorithm 1 (section 4.1.3), on one policy model.
//
//   for iteration = 1..I:  reference model <- policy                    (ReferenceResetEvery steps each)
//     for step = 1..M:
//       sample a batch of questions; old policy <- policy
//       sample G outputs per question from the old policy, recording each token's log-prob
//       score the outputs (Rewards), compute advantages (Advantages: outcome or process supervision)
//       for mu gradient steps: maximise the GRPO objective (PolicyLoss) -> backward -> clip -> AdamW
//
// The same loop runs the paper's section 5.2 baselines by switching the gradient coefficient
// (GradientCoefficient): Online RFT (coefficient 1 on correct outputs of the current policy) and RFT
// (the same, on outputs sampled from the initial, supervised model: offline data). The paper's RFT
// samples its data set from the SFT model once and then fine-tunes on the correct outputs; drawing
// each step's batch from a frozen copy of the SFT model is the same data (same distribution, same
// number of samples, each used once), made as it is needed rather than up front.
// Process supervision (Supervision.Process) reads the task's step rewards; ProcessSteps maps each
// step's end in the text to a token, and Advantages.Process gives per-token advantages.
// Where this departs from the paper, by default (GrpoSettings; DeepSeekMath() restores the paper's):
// token-level aggregation (DAPO), no KL (beta 0, as DAPO and Dr. GRPO find it unneeded for verifiable
// rewards), groups that give no gradient dropped (DAPO's dynamic sampling: for GRPO, groups whose
// rewards, or step rewards, are all equal, so their advantages are 0; for RFT and Online RFT, groups
// with no correct output), truncated outputs masked.
// A gradient step whose loss or gradient norm is NaN or infinite is skipped before AdamW runs (no
// weight or moment changes), as are the batch's remaining inner steps; the step's metrics say
// Skipped. With mu > 1 the inner steps before the bad one stand (they were finite). The CLI stops a
// run after several skipped steps in a row (Cli/TrainingRun.cs).
// Device: the policy (and so the reference and RFT's initial model) may live on a GPU. Sampling,
// the forward and backward passes and AdamW then run there; the per-token log-probs (B, T) come to
// the host, where PolicyLoss (the readable equations) forms the objective, and its gradient goes back
// through Tensor.To into the GPU's graph: one small copy each way per gradient step.
// Everything a checkpoint needs to resume exactly is public: the policy (passed in), Optimizer, Rng,
// StepIndex, Reference and InitialPolicy (whose weights a resume loads in place).
// Tests: Grpo.Tests/Rl/GrpoTrainerTests.cs, ProcessStepsTests.cs, DynamicSamplingTests.cs; the
// experiments' smoke tests (Cli/ExperimentCommandTests.cs).
using System.Diagnostics;
using Grpo.Compute;
using Grpo.Model;
using Grpo.Ops;
using Grpo.Optim;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Rl;

public sealed record GrpoStepMetrics(
    int Step, double Loss, double RewardMean, double RewardStd, IReadOnlyDictionary<string, double> RewardPerFunction,
    double Accuracy, double Kl, double ClipFractionLow, double ClipFractionHigh, double Entropy,
    double CompletionLengthMean, int CompletionLengthMax, double TruncatedFraction, double ZeroStdGroupFraction,
    int GroupsTrained, double GradNorm, double LearningRate, bool Skipped, int RewardErrors,
    double SamplingTokensPerSecond, double TrainingTokensPerSecond, double StepSeconds);

public sealed class GrpoTrainer
{
    private readonly Transformer policy;
    private readonly IRlTask task;
    private readonly ITokenizer tokenizer;
    private readonly GrpoSettings settings;
    private readonly Rewards rewards;
    private readonly LrSchedule schedule;
    private Transformer? reference;
    private readonly Transformer? initialPolicy;

    public AdamW Optimizer { get; }
    /// <summary>Reward functions that threw (the completion got 0), and the first message.</summary>
    public int RewardErrors => rewards.Errors;
    public string? Errors => rewards.FirstError;
    public Rng Rng { get; }
    public int StepIndex { get; set; }
    /// <summary>The KL reference model (null when beta is 0); replaced by a copy of the policy every ReferenceResetEvery steps.</summary>
    public Transformer? Reference => reference;
    /// <summary>RFT's frozen initial model, the one it samples from (null for the other methods).</summary>
    public Transformer? InitialPolicy => initialPolicy;

    public GrpoTrainer(Transformer policy, IRlTask task, ITokenizer tokenizer, GrpoSettings settings, Rewards rewards)
    {
        settings.Validate();
        if (settings.Supervision == Supervision.Process && task is not IProcessRewardTask)
            throw new ArgumentException($"process supervision needs a task that scores steps; {task.Name} does not");
        this.policy = policy;
        this.task = task;
        this.tokenizer = tokenizer;
        this.settings = settings;
        this.rewards = rewards;
        Rng = new Rng(settings.Seed);
        Optimizer = new AdamW(policy.Parameters, settings.LearningRate, weightDecay: settings.WeightDecay);
        schedule = settings.Cosine
            ? LrSchedule.WarmupCosine(settings.LearningRate, settings.LearningRate * 0.1f, settings.WarmupSteps, Math.Max(1, settings.Steps))
            : LrSchedule.Constant(settings.LearningRate, settings.WarmupSteps);
        if (settings.Beta > 0) reference = Copy(policy);
        if (settings.Method == TrainingMethod.Rft) initialPolicy = Copy(policy);
    }

    /// <summary>One step of Algorithm 1: sample, score, compute advantages, mu gradient steps.</summary>
    public GrpoStepMetrics Step()
    {
        var stepWatch = Stopwatch.StartNew();
        int G = settings.GroupSize;
        if (reference != null && settings.ReferenceResetEvery > 0 && StepIndex > 0 && StepIndex % settings.ReferenceResetEvery == 0)
            reference = Copy(policy);

        // 1. Questions and G outputs each from the old policy (for RFT: from the initial model).
        var problems = Enumerable.Range(0, settings.QuestionsPerStep).Select(_ => task.SampleTraining(Rng)).ToArray();
        var prompts = problems.Select(p => tokenizer.Encode(p.Prompt, addBos: true)).ToArray();
        var generation = new GenerationOptions(settings.MaxNewTokens,
            new SamplerOptions { Temperature = settings.Temperature, TopP = settings.TopP }, tokenizer.Eos);
        var sampleWatch = Stopwatch.StartNew();
        var outputs = Generator.Generate(initialPolicy ?? policy, prompts, G, generation, Rng);
        double samplingSeconds = sampleWatch.Elapsed.TotalSeconds;
        int sampledTokens = outputs.Sum(o => o.NewTokens);

        // 2. Rewards, one per output (outputs are group-major: output r answers problem r / G).
        var texts = outputs.Select(o => tokenizer.Decode(o.Tokens)).ToArray();
        var outputProblems = outputs.Select(o => problems[o.PromptIndex]).ToArray();
        int errorsBefore = rewards.Errors;
        var (reward, perFunction) = rewards.Score(outputProblems, texts);
        var correct = outputs.Select((o, r) => IsCorrect(outputProblems[r], texts[r])).ToArray();

        // Process supervision: each output's step rewards and the tokens where the steps end.
        var steps = settings.Supervision == Supervision.Process && settings.Method == TrainingMethod.Grpo
            ? ProcessSteps.ForOutputs((IProcessRewardTask)task, tokenizer, outputProblems, outputs.Select(o => o.Tokens).ToArray(), texts, reward)
            : null;

        // 3. Which groups to train on: with dynamic sampling, only those that give a gradient.
        var groupKept = new bool[problems.Length];
        int zeroStdGroups = 0;
        for (int q = 0; q < problems.Length; q++)
        {
            var groupRewards = reward.AsSpan(q * G, G);
            bool constant = groupRewards.IndexOfAnyExcept(groupRewards[0]) < 0;
            if (constant) zeroStdGroups++;
            groupKept[q] = !settings.DynamicSampling || CarriesSignal(groupRewards, constant, steps?.Skip(q * G).Take(G));
        }
        var kept = Enumerable.Range(0, outputs.Length).Where(r => groupKept[r / G]).ToArray();

        double loss = 0, gradNorm = 0, kl = 0, clipLow = 0, clipHigh = 0, entropy = 0, trainingSeconds = 0;
        bool skipped = false;
        int trainedTokens = 0;
        float lr = schedule.At(StepIndex);
        if (kept.Length > 0)
        {
            var trainWatch = Stopwatch.StartNew();
            var batch = new SequenceBatch(kept.Select(r => prompts[outputs[r].PromptIndex]).ToArray(),
                kept.Select(r => outputs[r].Tokens).ToArray(), tokenizer.Pad);
            var mask = (float[])batch.CompletionMask.Clone();
            var oldLogProbs = new float[mask.Length];
            for (int b = 0; b < kept.Length; b++)
            {
                var output = outputs[kept[b]];
                for (int j = 0; j < output.NewTokens; j++)
                {
                    int k = batch.CompletionIndex(b, j);
                    oldLogProbs[k] = output.LogProbs[j];
                    if (settings.MaskTruncated && output.Truncated) mask[k] = 0;
                }
            }
            var advantages = TokenAdvantages(batch, kept, reward, steps);
            float[]? refLogProbs = reference == null ? null : LogProbsOf(reference, batch);
            var lossOptions = new PolicyLossOptions
            {
                EpsilonLow = settings.Epsilon, EpsilonHigh = settings.EpsilonHigh, Beta = settings.Beta,
                Aggregation = settings.Aggregation, MaxTokens = settings.MaxNewTokens, Kl = settings.Kl,
            };
            var parameters = policy.Parameters.Select(p => p.Value).ToArray();
            Optimizer.LearningRate = lr;
            for (int inner = 0; inner < settings.Mu; inner++)
            {
                using var scope = DeviceArray.Scope();   // on a GPU, this gradient step's tensors go back to the pool at its end
                var logits = policy.Forward(batch.Inputs, batch.Batch, batch.SeqLen);           // (B, T, V)
                var logProbs = Op.TokenLogProbs(logits, batch.Targets).To(Device.Cpu);          // (B, T), on the host
                if (inner == 0) entropy = MeanEntropy(logits, mask);
                // A diverged policy (or reference) gives NaN log-probs, which PolicyLoss refuses: skip instead.
                if (!FiniteWhereMasked(logProbs.Data, mask) || !FiniteWhereMasked(oldLogProbs, mask)
                    || refLogProbs != null && !FiniteWhereMasked(refLogProbs, mask) || !FiniteWhereMasked(advantages, mask))
                {
                    if (inner == 0) loss = double.NaN;
                    skipped = true;
                    break;
                }
                Tensor objective;
                if (settings.Method == TrainingMethod.Grpo)
                {
                    var result = PolicyLoss.Compute(logProbs, oldLogProbs, refLogProbs, advantages, mask, lossOptions);
                    objective = result.Loss;
                    if (inner == 0) (kl, clipLow, clipHigh) = (result.Statistics.MeanKl, result.Statistics.ClipFractionLow, result.Statistics.ClipFractionHigh);
                }
                else
                {
                    var outcome = kept.Select(r => reward[r]).ToArray();
                    var coefficients = GradientCoefficient.Coefficients(settings.Method, mask, batch.SeqLen, outcomeRewards: outcome);
                    objective = GradientCoefficient.Loss(logProbs, coefficients, mask);
                }
                if (inner == 0) loss = objective.Item();
                Autograd.Backward(objective);
                gradNorm = GradClip.ClipGlobalNorm(parameters, settings.MaxGradNorm);
                if (!float.IsFinite(objective.Item()) || !double.IsFinite(gradNorm)) { skipped = true; Optimizer.ZeroGrad(); break; }
                Optimizer.Step();
                Optimizer.ZeroGrad();
            }
            trainedTokens = (int)mask.Sum() * settings.Mu;
            trainingSeconds = trainWatch.Elapsed.TotalSeconds;
        }
        StepIndex++;

        var lengths = outputs.Select(o => o.NewTokens).ToArray();
        double mean = reward.Average(r => (double)r);
        double std = Math.Sqrt(reward.Average(r => (r - mean) * (r - mean)));
        var perFunctionMeans = rewards.Functions.Select((f, i) => (f.Name, perFunction[i].Average()))
            .ToDictionary(x => x.Name, x => x.Item2);
        return new GrpoStepMetrics(StepIndex, loss, mean, std, perFunctionMeans, correct.Average(c => c ? 1.0 : 0.0),
            kl, clipLow, clipHigh, entropy, lengths.Average(), lengths.Max(), outputs.Average(o => o.Truncated ? 1.0 : 0.0),
            (double)zeroStdGroups / problems.Length, kept.Length / G, gradNorm, lr, skipped, rewards.Errors - errorsBefore,
            sampledTokens / Math.Max(1e-9, samplingSeconds), trainedTokens / Math.Max(1e-9, trainingSeconds),
            stepWatch.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Whether a group gives a gradient (dynamic sampling drops those that do not): GRPO with outcome
    /// rewards, when its rewards differ; with process rewards, when its step rewards differ (outputs
    /// with the same final answer can differ in their steps); RFT and Online RFT, when an output is
    /// correct (their coefficient is 1 on correct outputs, whatever the others got, so a group
    /// that is all correct is kept).
    /// </summary>
    private bool CarriesSignal(ReadOnlySpan<float> groupRewards, bool constantRewards, IEnumerable<(float[] Rewards, int[] Ends)>? groupSteps)
    {
        if (settings.Method != TrainingMethod.Grpo)
        {
            foreach (var r in groupRewards) if (r > 0) return true;
            return false;
        }
        if (groupSteps == null) return !constantRewards;
        var all = groupSteps.SelectMany(s => s.Rewards).ToArray();
        return all.Length > 0 && all.AsSpan().IndexOfAnyExcept(all[0]) >= 0;
    }

    /// <summary>Per-token advantages in the batch layout (B * T): outcome (one value per output) or process.</summary>
    private float[] TokenAdvantages(SequenceBatch batch, int[] kept, float[] reward, (float[] Rewards, int[] Ends)[]? steps)
    {
        int G = settings.GroupSize;
        var options = new AdvantageOptions(settings.Scale, settings.Std);
        var advantages = new float[batch.Inputs.Length];
        if (settings.Method != TrainingMethod.Grpo) return advantages;
        // Kept outputs come in whole groups, in order, so they are group-major as Advantages expects.
        if (steps == null)
        {
            var perOutput = Advantages.Outcome(kept.Select(r => reward[r]).ToArray(), G, options);
            for (int b = 0; b < kept.Length; b++)
                for (int j = 0; j < batch.CompletionLength(b); j++) advantages[batch.CompletionIndex(b, j)] = perOutput[b];
            return advantages;
        }
        var lengths = kept.Select((_, b) => batch.CompletionLength(b)).ToArray();
        var perToken = Advantages.Process(kept.Select(r => steps[r].Rewards).ToArray(), kept.Select(r => steps[r].Ends).ToArray(), lengths, G, options);
        for (int b = 0; b < kept.Length; b++)
            for (int j = 0; j < lengths[b]; j++) advantages[batch.CompletionIndex(b, j)] = perToken[b][j];
        return advantages;
    }

    /// <summary>The task's verifier for the accuracy metric; one that throws counts as wrong (Rewards has counted the error).</summary>
    private bool IsCorrect(Problem problem, string text)
    {
        try { return task.Reward(problem, text) >= 1.0; }
        catch (Exception) { return false; }
    }

    private static bool FiniteWhereMasked(float[] values, float[] mask)
    {
        for (int k = 0; k < mask.Length; k++)
            if (mask[k] != 0 && !float.IsFinite(values[k])) return false;
        return true;
    }

    private static float[] LogProbsOf(Transformer model, SequenceBatch batch)
    {
        using var _ = Autograd.NoGrad();
        using var scope = DeviceArray.Scope();
        return Op.TokenLogProbs(model.Forward(batch.Inputs, batch.Batch, batch.SeqLen), batch.Targets).ToArray();
    }

    /// <summary>Mean over completion tokens of the policy's entropy -sum_v p_v log p_v (a health signal: RL lowers it).</summary>
    private static double MeanEntropy(Tensor logits, float[] mask)
    {
        var entropy = Op.RowEntropy(logits, mask);   // one value per position; on a GPU only these come back
        var values = entropy.Data;
        double total = 0;
        int count = 0;
        for (int k = 0; k < mask.Length; k++)
        {
            if (mask[k] == 0) continue;
            total += values[k];
            count++;
        }
        return count == 0 ? 0 : total / count;
    }

    /// <summary>A frozen copy of a model's weights (the reference model, or RFT's initial model).</summary>
    public static Transformer Copy(Transformer model) => model.CopyTo(model.Device);
}
