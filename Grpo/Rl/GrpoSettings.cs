// Every setting of the RL loop, with its default and a description (`grpo grpo --help` lists them).
// The defaults are the small built-in task's tuned values (from the shipped warm start, 500 held-out
// problems x 16 samples: lr 2e-4 and above made pass@1 fall; at lr 1e-4, 8 questions a step for 300
// steps gave +4.6 to +7.3 points of pass@1 over three seeds, 500 steps +6.3 but greedy fell; 16
// questions a step for 250 steps +8.6 with greedy +5 and maj@16 +4.8); DeepSeekMath() gives the paper's (section
// 4.2: lr 1e-6, beta 0.04, 64 samples per question, max length 1024, batch 1024 = 16 questions x 64).
using System.ComponentModel;

namespace Grpo.Rl;

public enum Supervision { Outcome, Process }

public sealed class GrpoSettings
{
    [Description("training method: grpo, online-rft or rft (the paper's section 5.2 baselines)")]
    public TrainingMethod Method { get; set; } = TrainingMethod.Grpo;
    [Description("training steps")]
    public int Steps { get; set; } = 250;
    [Description("questions sampled per step")]
    public int QuestionsPerStep { get; set; } = 16;
    [Description("G, outputs sampled per question")]
    public int GroupSize { get; set; } = 16;
    [Description("mu, gradient steps per batch of samples (old log-probs are those recorded at sampling)")]
    public int Mu { get; set; } = 1;
    [Description("beta, the KL coefficient (0: no reference model is kept)")]
    public float Beta { get; set; } = 0f;
    [Description("reference model reset to the policy every this many steps (an iteration of Algorithm 1; 0: fixed)")]
    public int ReferenceResetEvery { get; set; } = 0;
    [Description("lower clip epsilon: ratio clipped at 1 - epsilon")]
    public float Epsilon { get; set; } = 0.2f;
    [Description("upper clip epsilon: ratio clipped at 1 + epsilon-high (DAPO's clip-higher when larger)")]
    public float EpsilonHigh { get; set; } = 0.2f;
    [Description("advantage scale: group (the paper), batch, or none (Dr. GRPO)")]
    public AdvantageScale Scale { get; set; } = AdvantageScale.Group;
    [Description("advantage std: population (the paper's example) or sample (TRL)")]
    public StdKind Std { get; set; } = StdKind.Population;
    [Description("loss aggregation: sequence (the paper), token (DAPO) or constant (Dr. GRPO)")]
    public LossAggregation Aggregation { get; set; } = LossAggregation.Token;
    [Description("outcome or process supervision (process needs a task that checks steps)")]
    public Supervision Supervision { get; set; } = Supervision.Outcome;
    [Description("KL estimator: k1, k2 or k3 (the paper's)")]
    public KlEstimator Kl { get; set; } = KlEstimator.K3;
    [Description("peak learning rate")]
    public float LearningRate { get; set; } = 1e-4f;
    [Description("learning-rate warm-up steps")]
    public int WarmupSteps { get; set; } = 0;
    [Description("cosine decay to 10% of the peak (else constant)")]
    public bool Cosine { get; set; } = false;
    [Description("AdamW weight decay")]
    public float WeightDecay { get; set; } = 0f;
    [Description("global gradient-norm clip")]
    public float MaxGradNorm { get; set; } = 1f;
    [Description("most tokens a completion may have")]
    public int MaxNewTokens { get; set; } = 48;
    [Description("rollout temperature")]
    public float Temperature { get; set; } = 1f;
    [Description("rollout top-p")]
    public float TopP { get; set; } = 1f;
    [Description("drop groups whose rewards are all equal (DAPO's dynamic sampling)")]
    public bool DynamicSampling { get; set; } = true;
    [Description("give truncated completions (no EOS within the budget) no loss")]
    public bool MaskTruncated { get; set; } = true;
    [Description("weight of the format reward (1 when a final answer can be read)")]
    public float FormatRewardWeight { get; set; } = 0f;
    [Description("random seed")]
    public ulong Seed { get; set; } = 1;
    [Description("matmul precision of the linear layers: fp32 or bf16 (bf16 operands, fp32 sums; weights and AdamW stay fp32)")]
    public Grpo.Ops.MatMulPrecision Precision { get; set; } = Grpo.Ops.MatMulPrecision.Fp32;

    /// <summary>The paper's settings (DeepSeekMath section 4.2), for a model and task that can bear them.</summary>
    public static GrpoSettings DeepSeekMath() => new()
    {
        LearningRate = 1e-6f, Beta = 0.04f, GroupSize = 64, QuestionsPerStep = 16, MaxNewTokens = 1024,
        Mu = 1, Aggregation = LossAggregation.Sequence, Scale = AdvantageScale.Group, Std = StdKind.Population,
        DynamicSampling = false, MaskTruncated = false, Epsilon = 0.2f, EpsilonHigh = 0.2f, WeightDecay = 0f,
    };

    /// <summary>Checks ranges; throws ArgumentException with one line naming the setting.</summary>
    public void Validate()
    {
        if (Method == TrainingMethod.Sft) throw new ArgumentException("--method sft is the `sft` command (worked solutions, no sampling); this loop takes grpo, online-rft or rft");
        if (GroupSize < 2) throw new ArgumentException($"--group-size must be at least 2 (got {GroupSize}): advantages compare outputs within a group");
        if (QuestionsPerStep < 1) throw new ArgumentException($"--questions-per-step must be at least 1 (got {QuestionsPerStep})");
        if (Steps < 0) throw new ArgumentException($"--steps must be >= 0 (got {Steps})");
        if (Mu < 1) throw new ArgumentException($"--mu must be at least 1 (got {Mu})");
        if (!(Epsilon > 0) || !(EpsilonHigh > 0)) throw new ArgumentException($"--epsilon and --epsilon-high must be > 0 (got {Epsilon}, {EpsilonHigh})");
        if (!(Beta >= 0)) throw new ArgumentException($"--beta must be >= 0 (got {Beta})");
        if (!(LearningRate >= 0) || !float.IsFinite(LearningRate)) throw new ArgumentException($"--learning-rate must be a finite number >= 0 (got {LearningRate})");
        if (WarmupSteps < 0) throw new ArgumentException($"--warmup-steps must be >= 0 (got {WarmupSteps})");
        if (Cosine && WarmupSteps >= Math.Max(1, Steps)) throw new ArgumentException($"--warmup-steps must be less than --steps with --cosine (got {WarmupSteps} with --steps {Steps})");
        if (!(WeightDecay >= 0) || !float.IsFinite(WeightDecay)) throw new ArgumentException($"--weight-decay must be a finite number >= 0 (got {WeightDecay})");
        if (!(MaxGradNorm > 0)) throw new ArgumentException($"--max-grad-norm must be > 0 (got {MaxGradNorm})");
        if (!float.IsFinite(FormatRewardWeight)) throw new ArgumentException($"--format-reward-weight must be finite (got {FormatRewardWeight})");
        if (MaxNewTokens < 1) throw new ArgumentException($"--max-new-tokens must be at least 1 (got {MaxNewTokens})");
        if (!(Temperature >= 0)) throw new ArgumentException($"--temperature must be >= 0 (got {Temperature})");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"--top-p must be in (0, 1] (got {TopP})");
        if (ReferenceResetEvery < 0) throw new ArgumentException($"--reference-reset-every must be >= 0 (got {ReferenceResetEvery})");
    }
}
