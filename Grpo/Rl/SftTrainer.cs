// Supervised fine-tuning: maximise the log-likelihood of reference completions given their prompts.
//
//   L_SFT = - (1 / |o|) sum_t log pi_theta(o_t | q, o_<t)       (DeepSeekMath section 5.2.1, eq. 6)
//
// averaged over the completion tokens of the batch (prompt tokens are context, not targets). In the
// paper's unified view this is the policy gradient with coefficient 1 on every token of a human
// (here: the task's worked) solution. Used as the warm-up before GRPO and by RFT on filtered samples.
using Grpo.Compute;
using Grpo.Model;
using Grpo.Ops;
using Grpo.Optim;

namespace Grpo.Rl;

public sealed class SftTrainer
{
    private readonly Transformer model;
    private readonly AdamW optimizer;
    private readonly LrSchedule schedule;
    private readonly float maxGradNorm;
    private readonly int padToken;

    public SftTrainer(Transformer model, AdamW optimizer, LrSchedule schedule, int padToken, float maxGradNorm = 1f)
    {
        this.model = model;
        this.optimizer = optimizer;
        this.schedule = schedule;
        this.padToken = padToken;
        this.maxGradNorm = maxGradNorm;
    }

    public sealed record StepResult(float Loss, float GradNorm, float LearningRate, int Tokens, bool Skipped);

    /// <summary>One optimiser step on a batch of (prompt, completion) pairs.</summary>
    public StepResult Step(IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> completions)
    {
        // On a GPU, the step's activations and intermediate gradients go back to the pool when it ends.
        using var scope = DeviceArray.Scope();
        var batch = new SequenceBatch(prompts, completions, padToken);
        var logits = model.Forward(batch.Inputs, batch.Batch, batch.SeqLen);              // (B, T, V)
        var loss = Op.CrossEntropy(logits, batch.Targets, batch.CompletionMask);          // scalar
        Autograd.Backward(loss);
        var parameters = model.Parameters.Select(p => p.Value).ToArray();
        float norm = GradClip.ClipGlobalNorm(parameters, maxGradNorm);
        float lr = schedule.At(optimizer.StepCount);
        bool skipped = !float.IsFinite(loss.Item()) || !float.IsFinite(norm);
        if (!skipped)
        {
            optimizer.LearningRate = lr;
            optimizer.Step();
        }
        optimizer.ZeroGrad();
        return new StepResult(loss.Item(), norm, lr, batch.CompletionTokens, skipped);
    }
}
