// One step of a worked arithmetic solution, "a op b = c" (op one of + - * /, whole numbers), and the
// process reward that checks the steps of a completion against the question (DeepSeekMath section
// 4.1.3, process supervision, here without a reward model because each step can be checked exactly).
//
// The rule, per line of the completion before its "Answer:" line (blank lines are not steps):
//   +1 Correct         it is a step of the reference solution (same operator and operands, either
//                      order for + and *; each reference step is credited once) and its operands are
//                      known: numbers in the question, constants the reference solution uses without
//                      computing them (60 minutes an hour), or results of earlier steps of this completion;
//   -1 Unparsed        it is not "a op b = c";
//   -1 WrongArithmetic a op b is not c (so "7 * 8 = 54" is wrong whatever the question);
//   -1 UnknownOperand  an operand comes from nowhere (copied from another problem, or a guessed result);
//   -1 NotNeeded       right arithmetic on known numbers, but not a step this question needs, or a
//                      repeat: the issue's "50 * 12 = 600 is the wrong step for the question".
// Results of right steps (needed or not) become known numbers for the steps after them.
// Tests: Grpo.Tests/Tasks/ProcessRewardTests.cs (hand examples of each verdict).
using System.Globalization;
using System.Text.RegularExpressions;

namespace Grpo.Tasks;

public readonly record struct ArithmeticStep(long Left, char Operator, long Right)
{
    /// <summary>Left op Right; division is only ever exact in this task.</summary>
    public long Result => Operator switch
    {
        '+' => Left + Right,
        '-' => Left - Right,
        '*' => Left * Right,
        '/' => Left / Right,
        _ => throw new InvalidOperationException($"unknown operator '{Operator}'"),
    };

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Left} {Operator} {Right} = {Result}");

    /// <summary>True when "left op right = claimed" holds exactly (division by zero never holds).</summary>
    public static bool Holds(long left, char op, long right, long claimed) => op switch
    {
        '+' => left + right == claimed,
        '-' => left - right == claimed,
        '*' => left * right == claimed,
        '/' => right != 0 && right * claimed == left,
        _ => false,
    };

    /// <summary>The same computation: same operator and operands, either order for + and *.</summary>
    public bool SameAs(long left, char op, long right) =>
        op == Operator && ((left == Left && right == Right) || (op is '+' or '*' && left == Right && right == Left));
}

public static partial class ArithmeticSteps
{
    public const double CorrectReward = 1.0, WrongReward = -1.0;

    /// <summary>Parses "a op b = c" (spaces optional) into its four parts.</summary>
    public static bool TryParse(ReadOnlySpan<char> line, out long left, out char op, out long right, out long claimed)
    {
        var match = StepLine().Match(line.Trim().ToString());
        left = right = claimed = 0;
        op = ' ';
        if (!match.Success) return false;
        op = match.Groups["op"].Value[0];
        return long.TryParse(match.Groups["a"].Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out left)
            && long.TryParse(match.Groups["b"].Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out right)
            && long.TryParse(match.Groups["c"].Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out claimed);
    }

    /// <summary>The steps of a worked solution (its lines before "Answer:"), which must all parse.</summary>
    public static List<ArithmeticStep> ParseSolution(string solution)
    {
        var steps = new List<ArithmeticStep>();
        foreach (var (start, end) in StepLines(solution))
        {
            if (!TryParse(solution.AsSpan(start, end - start), out var a, out var op, out var b, out _))
                throw new FormatException($"not a step: \"{solution[start..end]}\"");
            steps.Add(new ArithmeticStep(a, op, b));
        }
        return steps;
    }

    /// <summary>The process rewards of <paramref name="completion"/> for a problem whose reference
    /// solution is <paramref name="referenceSolution"/> (the rule is in the file header).</summary>
    public static IReadOnlyList<StepReward> Score(string question, string referenceSolution, string completion)
    {
        var reference = ParseSolution(referenceSolution);
        var known = new HashSet<long>(NumbersIn(question));
        var computed = new HashSet<long>();
        foreach (var step in reference)
        {
            // An operand the reference uses before computing it is given (e.g. 60 minutes an hour).
            if (!computed.Contains(step.Left)) known.Add(step.Left);
            if (!computed.Contains(step.Right)) known.Add(step.Right);
            computed.Add(step.Result);
        }

        var uncredited = new List<ArithmeticStep>(reference);
        var rewards = new List<StepReward>();
        foreach (var (start, end) in StepLines(completion))
        {
            StepVerdict verdict;
            if (!TryParse(completion.AsSpan(start, end - start), out var a, out var op, out var b, out var c))
                verdict = StepVerdict.Unparsed;
            else if (!ArithmeticStep.Holds(a, op, b, c))
                verdict = StepVerdict.WrongArithmetic;
            else if (!known.Contains(a) || !known.Contains(b))
                verdict = StepVerdict.UnknownOperand;
            else
            {
                int match = uncredited.FindIndex(step => step.SameAs(a, op, b));
                verdict = match >= 0 ? StepVerdict.Correct : StepVerdict.NotNeeded;
                if (match >= 0) uncredited.RemoveAt(match);
                known.Add(c);
            }
            rewards.Add(new StepReward(end, verdict == StepVerdict.Correct ? CorrectReward : WrongReward, verdict));
        }
        return rewards;
    }

    /// <summary>(start, end) of each non-blank line before the first line that starts with "Answer:".</summary>
    public static IEnumerable<(int Start, int End)> StepLines(string text)
    {
        int start = 0;
        while (start < text.Length)
        {
            int end = text.IndexOf('\n', start);
            if (end < 0) end = text.Length;
            var line = text.AsSpan(start, end - start).Trim();
            if (line.StartsWith(ArithmeticTask.AnswerMarker, StringComparison.Ordinal)) yield break;
            if (!line.IsEmpty) yield return (start, end);
            start = end + 1;
        }
    }

    /// <summary>The whole numbers written in a text, e.g. the givens of a question.</summary>
    public static IEnumerable<long> NumbersIn(string text) =>
        WholeNumber().Matches(text).Select(m => long.Parse(m.Value, CultureInfo.InvariantCulture));

    [GeneratedRegex(@"^(?<a>-?\d{1,15})\s*(?<op>[-+*/])\s*(?<b>-?\d{1,15})\s*=\s*(?<c>-?\d{1,15})$")]
    private static partial Regex StepLine();

    [GeneratedRegex(@"\d{1,15}")]
    private static partial Regex WholeNumber();
}
