// Rewards: several reward functions, each with a weight; a completion's reward is their weighted sum
//
//   r(q, o) = sum_f w_f * r_f(q, o)
//
// DeepSeekMath scores outputs with a learned reward model; here, as in the later rule-based recipes,
// rewards are verifiers: `correct` (the task's verifier: 1 for the right final answer) and `format`
// (1 when the completion states a final answer the task can read at all). A reward function that
// throws gives that completion 0; the error is counted and its first message kept, so one bad
// completion never stops a run (the trainer reports both). A weighted sum that overflows a float
// is treated the same way.
// Tests: Grpo.Tests/Rl/RewardsTests.cs.
using Grpo.Tasks;

namespace Grpo.Rl;

public sealed record RewardFunction(string Name, double Weight, Func<Problem, string, double> Score);

public sealed class Rewards
{
    public IReadOnlyList<RewardFunction> Functions { get; }
    public int Errors { get; private set; }
    public string? FirstError { get; private set; }

    public Rewards(IReadOnlyList<RewardFunction> functions)
    {
        if (functions.Count == 0) throw new ArgumentException("at least one reward function is needed");
        Functions = functions;
    }

    /// <summary>The task's verifier with weight 1, plus a format reward when formatWeight is not 0.</summary>
    public static Rewards ForTask(IRlTask task, double formatWeight = 0)
    {
        var functions = new List<RewardFunction> { new("correct", 1.0, task.Reward) };
        if (formatWeight != 0) functions.Add(new("format", formatWeight, (_, completion) => task.ExtractAnswer(completion) != null ? 1 : 0));
        return new Rewards(functions);
    }

    /// <summary>Total rewards (one per completion) and each function's raw score [function][completion].</summary>
    public (float[] Total, double[][] PerFunction) Score(IReadOnlyList<Problem> problems, IReadOnlyList<string> completions)
    {
        var total = new float[completions.Count];
        var perFunction = Functions.Select(_ => new double[completions.Count]).ToArray();
        for (int i = 0; i < completions.Count; i++)
        {
            double sum = 0;
            for (int f = 0; f < Functions.Count; f++)
            {
                double score;
                try { score = Functions[f].Score(problems[i], completions[i]); }
                catch (Exception e)
                {
                    score = 0;
                    Errors++;
                    FirstError ??= $"reward '{Functions[f].Name}' threw {e.GetType().Name}: {e.Message}";
                }
                if (!double.IsFinite(score)) score = 0;
                perFunction[f][i] = score;
                sum += Functions[f].Weight * score;
            }
            total[i] = (float)sum;
            if (!float.IsFinite(total[i]))
            {
                // Finite scores with huge weights can still overflow a float: the advantages would be NaN.
                total[i] = 0;
                Errors++;
                FirstError ??= $"the weighted sum of rewards ({sum}) is not a finite float";
            }
        }
        return (total, perFunction);
    }
}
