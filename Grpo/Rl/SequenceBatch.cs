// Packs (prompt, completion) token sequences into one right-padded batch for a training forward pass.
//
// Row b holds prompt_b ++ completion_b, padded on the right. The model reads Inputs (B, T) and at
// position t predicts Targets[t] = the token at t + 1, so completion token j of row b is predicted at
// position |prompt_b| - 1 + j. CompletionMask is 1 exactly there: the SFT loss and the GRPO loss
// only count completion tokens. With right padding every real token sits at its natural position
// 0, 1, 2, ..., and causal attention never lets a real token see a pad, so no key mask is needed.
// (The generator pads prompts on the left instead, with positions counted from the first real token:
// the two layouts compute the same log-probabilities; Grpo.Tests/Sampling/GeneratorTests checks it.)
namespace Grpo.Rl;

public sealed class SequenceBatch
{
    public int Batch { get; }
    public int SeqLen { get; }
    public int[] Inputs { get; }
    public int[] Targets { get; }
    public float[] CompletionMask { get; }
    private readonly int[] promptLengths;
    private readonly int[] completionLengths;

    public SequenceBatch(IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> completions, int padToken)
    {
        if (prompts.Count != completions.Count) throw new ArgumentException($"{prompts.Count} prompts but {completions.Count} completions");
        Batch = prompts.Count;
        promptLengths = prompts.Select(p => p.Length).ToArray();
        completionLengths = completions.Select(c => c.Length).ToArray();
        if (promptLengths.Any(n => n == 0)) throw new ArgumentException("every prompt needs at least one token");
        SeqLen = Math.Max(1, Enumerable.Range(0, Batch).Max(b => promptLengths[b] + completionLengths[b]) - 1);
        Inputs = new int[Batch * SeqLen];
        Targets = new int[Batch * SeqLen];
        CompletionMask = new float[Batch * SeqLen];
        Array.Fill(Inputs, padToken);
        Array.Fill(Targets, padToken);
        for (int b = 0; b < Batch; b++)
        {
            var sequence = prompts[b].Concat(completions[b]).ToArray();
            int row = b * SeqLen;
            for (int t = 0; t < sequence.Length - 1; t++)
            {
                Inputs[row + t] = sequence[t];
                Targets[row + t] = sequence[t + 1];
            }
            if (sequence.Length == 1) Inputs[row] = sequence[0];
            for (int j = 0; j < completionLengths[b]; j++) CompletionMask[CompletionIndex(b, j)] = 1f;
        }
    }

    /// <summary>Index into the flattened (B*T) arrays where completion token j of row b is predicted.</summary>
    public int CompletionIndex(int b, int j) => b * SeqLen + promptLengths[b] - 1 + j;

    public int CompletionLength(int b) => completionLengths[b];

    public int CompletionTokens => completionLengths.Sum();
}
