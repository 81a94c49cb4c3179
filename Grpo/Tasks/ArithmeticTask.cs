// The built-in task: arithmetic word problems in the spirit of DeepSeekMath's example ("Weng earns
// $12 an hour for babysitting. Yesterday she did 50 minutes of babysitting. How much did she earn?"),
// small enough for a character-level model of ~0.35M parameters to learn on a CPU in minutes.
//   prompt   "Sam earns $12 an hour baking. He works 50 minutes. How much is he paid?\n"
//   solution "12 * 50 = 600\n600 / 60 = 10\nAnswer: 10"
// One line per step "a op b = c", then "Answer: N". Prompt + solution fit in MaxChars (120), so with
// BOS and EOS a problem fits a 128-token context of the CharTokenizer over Alphabet.
// Held-out split: a problem is held out when the FNV-1a hash of its prompt falls in one bucket of
// ten; the training sampler redraws such problems, so no training problem equals a held-out one as a
// string. The verifier reads the number on the first line that starts with "Answer:" (the first, so
// that hedging with several answers earns nothing) and gives 1 when it equals the reference, else the
// optional format reward when an answer line with a number is present, else 0. Step rewards for
// process supervision are ArithmeticSteps.Score's, then the final answer as one more step (+1 right,
// -1 missing or wrong), as a reward model would score a solution's last step.
// Tests: Grpo.Tests/Tasks/ArithmeticTaskTests.cs, ProcessRewardTests.cs.
using System.Globalization;
using Grpo.Sampling;

namespace Grpo.Tasks;

/// <summary>Easy (default): single-digit one-step problems and the two-step wage problem.
/// Hard: two-digit one-step problems, two-step problems, and the wage problem.</summary>
public enum ArithmeticDifficulty { Easy, Hard }

public sealed class ArithmeticTask : IProcessRewardTask
{
    /// <summary>The longest prompt + solution, in characters.</summary>
    public const int MaxChars = 120;

    public const string AnswerMarker = "Answer:";

    /// <summary>Every character a prompt or solution can hold. Fixed (not computed from the word lists)
    /// because a trained model's token ids depend on it: change it and old checkpoints misread.</summary>
    public const string Alphabet = " \n$*+-./0123456789:=?ABCDHJKLMPST" + "abcdefghijklmnopqrstuvwxyz";

    private const int HeldOutBuckets = 10;

    private readonly ArithmeticTemplate[][] templates;
    private readonly ulong heldOutSeed;
    private readonly List<Problem> heldOut = [];
    private readonly HashSet<string> heldOutPrompts = [];
    private Rng? heldOutRng;

    public ArithmeticTask(ArithmeticDifficulty difficulty = ArithmeticDifficulty.Easy, double formatReward = 0.0, ulong heldOutSeed = 1234)
    {
        if (formatReward is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(formatReward), "must be in [0, 1)");
        Difficulty = difficulty;
        FormatReward = formatReward;
        this.heldOutSeed = heldOutSeed;
        templates = difficulty == ArithmeticDifficulty.Easy ? ArithmeticTemplates.Easy : ArithmeticTemplates.Hard;
    }

    public ArithmeticDifficulty Difficulty { get; }

    /// <summary>The reward for a wrong answer given in the right format ("Answer: N"); 0 by default.</summary>
    public double FormatReward { get; }

    public string Name => Difficulty == ArithmeticDifficulty.Easy ? "arithmetic" : "arithmetic-hard";

    public Problem SampleTraining(Rng rng)
    {
        while (true)
        {
            var problem = Generate(rng);
            if (!IsHeldOut(problem.Prompt)) return problem;
        }
    }

    public IReadOnlyList<Problem> HeldOut(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        lock (heldOut)
        {
            // Extended lazily from one seeded stream, so a shorter list is a prefix of a longer one.
            heldOutRng ??= new Rng(heldOutSeed);
            long attempts = 0;
            while (heldOut.Count < count)
            {
                if (++attempts > 1000L * (count + 100))
                    throw new ArgumentOutOfRangeException(nameof(count), $"could not find {count} distinct held-out problems");
                var problem = Generate(heldOutRng);
                if (IsHeldOut(problem.Prompt) && heldOutPrompts.Add(problem.Prompt)) heldOut.Add(problem);
            }
            return heldOut.Take(count).ToList();
        }
    }

    /// <summary>True for the tenth of all possible prompts that only HeldOut may return.</summary>
    public static bool IsHeldOut(string prompt) => Fnv1a(prompt) % HeldOutBuckets == 0;

    public string? ExtractAnswer(string completion) => AnswerExtraction.AfterLineMarker(completion, AnswerMarker);

    public double Reward(Problem problem, string completion)
    {
        var answer = ExtractAnswer(completion);
        if (answer is null) return 0.0;
        return AnswerExtraction.SameNumber(answer, problem.Answer) ? 1.0 : FormatReward;
    }

    /// <summary>ArithmeticSteps.Score's reasoning steps, then the final answer as the last step: +1 when
    /// its number is the reference, else -1 (missing, or wrong); it ends at the end of the completion,
    /// so the answer line (and anything after it) is scored, not left without a reward.</summary>
    public IReadOnlyList<StepReward> StepRewards(Problem problem, string completion)
    {
        var steps = ArithmeticSteps.Score(problem.Prompt, problem.Solution, completion).ToList();
        var answer = ExtractAnswer(completion);
        bool right = answer != null && AnswerExtraction.SameNumber(answer, problem.Answer);
        steps.Add(new StepReward(completion.Length, right ? ArithmeticSteps.CorrectReward : ArithmeticSteps.WrongReward,
            right ? StepVerdict.Correct : StepVerdict.WrongAnswer));
        return steps;
    }

    /// <summary>A worked solution: one "a op b = c" line per step, then "Answer: N".</summary>
    public static string SolutionFor(IReadOnlyList<ArithmeticStep> steps) =>
        string.Concat(steps.Select(step => step + "\n")) + AnswerMarker + " " + steps[^1].Result.ToString(CultureInfo.InvariantCulture);

    private Problem Generate(Rng rng)
    {
        var phrasings = templates[rng.NextInt(templates.Length)];
        var (question, steps) = phrasings[rng.NextInt(phrasings.Length)](rng);
        var problem = new Problem(question + "\n", steps[^1].Result.ToString(CultureInfo.InvariantCulture), SolutionFor(steps));
        // A template that breaks the budget or the alphabet is a bug here, not bad input.
        if (problem.Prompt.Length + problem.Solution.Length > MaxChars)
            throw new InvalidOperationException($"problem longer than {MaxChars} characters: {question}");
        if ((problem.Prompt + problem.Solution).Any(c => !Alphabet.Contains(c)))
            throw new InvalidOperationException($"problem has a character outside the alphabet: {question}");
        return problem;
    }

    private static ulong Fnv1a(string text)
    {
        ulong hash = 14695981039346656037UL;
        foreach (char c in text) { hash ^= c; hash *= 1099511628211UL; }
        return hash;
    }
}
