// Evaluation metrics over sampled answers, as DeepSeekMath reports them (section 5.2.2, Figure 7:
// "RL enhances Maj@K but not Pass@K"). Pure functions: the trainer samples, the task verifies, and
// these count. No model here.
//   greedy accuracy: the fraction of problems whose greedy (temperature 0) completion is right.
//   pass@k: the chance that at least one of k samples is right, estimated without bias from n >= k
//           samples of which c are right (Chen et al. 2021, the Codex paper):
//             pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1..n} (1 - k / i)
//           The product form never forms a binomial coefficient, so it cannot overflow (n = 1000 is fine).
//   maj@k:  the majority answer among the first k samples is right. Samples with no answer (null) do
//           not vote; ties go to the tied answer seen FIRST in sample order, which is deterministic
//           and does not favour the right answer; no votes at all is wrong.
// Differences from the paper: it does not say how it breaks maj@k ties; this code says.
// Tests: Grpo.Tests/Tasks/EvaluationTests.cs (hand values, properties, tie-breaking).
namespace Grpo.Rl;

public static class Evaluation
{
    /// <summary>Fraction of true values: greedy accuracy when each is one problem's greedy verdict.</summary>
    public static double Accuracy(IReadOnlyList<bool> correct)
    {
        if (correct.Count == 0) throw new ArgumentException("no problems", nameof(correct));
        return correct.Count(c => c) / (double)correct.Count;
    }

    /// <summary>Unbiased pass@k from <paramref name="n"/> samples with <paramref name="c"/> right; needs 1 &lt;= k &lt;= n.</summary>
    public static double PassAtK(int n, int c, int k)
    {
        if (n < 1 || c < 0 || c > n) throw new ArgumentOutOfRangeException(nameof(c), $"need 0 <= c <= n and n >= 1 (n={n}, c={c})");
        if (k < 1 || k > n) throw new ArgumentOutOfRangeException(nameof(k), $"need 1 <= k <= n (k={k}, n={n})");
        // Every k-subset holds a right sample when fewer than k are wrong.
        if (n - c < k) return 1.0;
        double allWrong = 1.0;  // C(n-c, k) / C(n, k)
        for (int i = n - c + 1; i <= n; i++) allWrong *= 1.0 - (double)k / i;
        return 1.0 - allWrong;
    }

    /// <summary>Mean pass@k over problems; each inner list is one problem's per-sample verdicts (same n or not).</summary>
    public static double PassAtK(IReadOnlyList<IReadOnlyList<bool>> correctPerProblem, int k)
    {
        if (correctPerProblem.Count == 0) throw new ArgumentException("no problems", nameof(correctPerProblem));
        return correctPerProblem.Average(samples => PassAtK(samples.Count, samples.Count(c => c), k));
    }

    /// <summary>The majority answer among the first <paramref name="k"/> answers (nulls do not vote;
    /// ties go to the answer seen first), or null when none of them votes.</summary>
    public static string? MajorityAnswer(IReadOnlyList<string?> answers, int k)
    {
        if (k < 1 || k > answers.Count) throw new ArgumentOutOfRangeException(nameof(k), $"need 1 <= k <= {answers.Count} (k={k})");
        var votes = new Dictionary<string, int>();
        var order = new List<string>();  // answers in order of first appearance
        for (int i = 0; i < k; i++)
        {
            if (answers[i] is not { } answer) continue;
            if (!votes.TryAdd(answer, 1)) votes[answer]++;
            else order.Add(answer);
        }
        string? best = null;
        int bestVotes = 0;
        // Scanning in order of first appearance and taking only strictly more votes gives ties to the earliest.
        foreach (var answer in order)
            if (votes[answer] > bestVotes) { best = answer; bestVotes = votes[answer]; }
        return best;
    }

    /// <summary>maj@k: the fraction of problems whose majority answer over the first k samples equals
    /// the reference. Answers and references must be canonical strings (as IRlTask.ExtractAnswer gives).</summary>
    public static double MajAtK(IReadOnlyList<IReadOnlyList<string?>> answersPerProblem, IReadOnlyList<string> references, int k)
    {
        if (answersPerProblem.Count == 0) throw new ArgumentException("no problems", nameof(answersPerProblem));
        if (answersPerProblem.Count != references.Count)
            throw new ArgumentException($"{answersPerProblem.Count} problems but {references.Count} references", nameof(references));
        int right = 0;
        for (int p = 0; p < references.Count; p++)
            if (MajorityAnswer(answersPerProblem[p], k) == references[p]) right++;
        return right / (double)references.Count;
    }
}
