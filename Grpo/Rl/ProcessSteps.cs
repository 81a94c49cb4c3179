// Process supervision in the trainer (DeepSeekMath section 4.1.3): a task scores the reasoning steps
// of a completion's text (IProcessRewardTask.StepRewards, each step ending at a character index);
// Advantages.Process wants each step's reward and the index of the TOKEN at which it ends. This file
// is that mapping, and what is done when a task gives a completion no step at all.
//
//   step j ends at character e_j  ->  index(j) = the first token whose text reaches e_j
//   a step that ends at the end of the text (the final answer, for the arithmetic task) ends at the
//   output's last token, so the EOS token (which decodes to no text) is scored with the answer
//   A_hat_{i,t} = sum_{index(j) >= t} r_tilde_i^index(j)   (Advantages.Process)
//
// So tokens after the last step get no process advantage; the arithmetic task makes its final answer
// line a step (scored by the verifier) so that no token of a completion goes unscored.
// Two steps may end in one token (a BPE token can swallow a line end); their normalised rewards then
// both count from that token back, exactly as the sum above says.
// Tests: Grpo.Tests/Rl/ProcessStepsTests.cs (and GrpoTrainerTests for the whole step).
using Grpo.Tasks;

namespace Grpo.Rl;

public static class ProcessSteps
{
    /// <summary>Each output's (step rewards, token ends): what the trainer hands Advantages.Process.
    /// tokens[r] is output r's sampled tokens (EOS included), texts[r] their decoded text, outcomeRewards[r]
    /// the reward used when the task finds no step.</summary>
    public static (float[] Rewards, int[] Ends)[] ForOutputs(IProcessRewardTask task, ITokenizer tokenizer,
        IReadOnlyList<Problem> problems, IReadOnlyList<int[]> tokens, IReadOnlyList<string> texts, IReadOnlyList<float> outcomeRewards) =>
        Enumerable.Range(0, tokens.Count).Select(r => ToTokens(task.StepRewards(problems[r], texts[r]),
            TextEnds(tokenizer, tokens[r]), tokens[r].Length, outcomeRewards[r])).ToArray();

    /// <summary>textEnds[j] = length of the decoded text of tokens 0..j (one character a token for
    /// CharTokenizer; EOS adds nothing). At least one entry, 0 for an empty output.</summary>
    public static int[] TextEnds(ITokenizer tokenizer, IReadOnlyList<int> tokens)
    {
        var ends = new int[Math.Max(1, tokens.Count)];
        for (int j = 0; j < tokens.Count; j++) ends[j] = tokenizer.Decode(tokens.Take(j + 1)).Length;
        return ends;
    }

    /// <summary>
    /// The step rewards of one output and the token index where each ends (non-decreasing, below
    /// tokenCount). A step at or past the end of the text ends at the last token. With no step (or no
    /// token) the whole output is one step rewarded <paramref name="wholeOutputReward"/>.
    /// </summary>
    public static (float[] Rewards, int[] Ends) ToTokens(IReadOnlyList<StepReward> steps, int[] textEnds, int tokenCount, float wholeOutputReward)
    {
        if (tokenCount == 0) return ([], []);
        if (steps.Count == 0) return ([wholeOutputReward], [tokenCount - 1]);
        int textLength = textEnds[Math.Min(textEnds.Length, tokenCount) - 1];
        var rewards = new float[steps.Count];
        var ends = new int[steps.Count];
        for (int s = 0; s < steps.Count; s++)
        {
            int end = steps[s].EndIndex >= textLength
                ? tokenCount - 1
                : Array.FindIndex(textEnds, 0, tokenCount, reached => reached >= steps[s].EndIndex);
            if (end < 0) end = tokenCount - 1;
            // A task's steps come in order; a step that maps before the previous one is held at it.
            ends[s] = s > 0 ? Math.Max(end, ends[s - 1]) : end;
            rewards[s] = (float)steps[s].Reward;
        }
        return (rewards, ends);
    }
}
