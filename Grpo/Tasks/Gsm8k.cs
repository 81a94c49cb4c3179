// GSM8K (Cobbe et al. 2021), the grade-school maths set DeepSeekMath reports on: JSONL lines
// {"question": ..., "answer": ...} whose answer is a worked solution with calculator annotations
// ("16 - 3 - 4 = <<16-3-4=9>>9") ending in a line "#### N". Loading turns each line into a Problem:
// the prompt is the question and a newline, the reference is N (canonical: "1,600" -> "1600"), and
// the SFT solution is the worked answer without the annotations. The verifier is AnswerExtraction's
// robust reading of the completion, compared with the reference as decimals: reward 1 or 0.
// Training problems whose prompt also appears in the test file are dropped, so held-out stays held out.
// Tests: Grpo.Tests/Tasks/Gsm8kTests.cs (loading errors; every test answer extracts to its own N).
using System.Text.RegularExpressions;
using Grpo.Sampling;

namespace Grpo.Tasks;

public static partial class Gsm8k
{
    /// <summary>The problems of a GSM8K JSONL file; TaskDataException (one line, naming the line) on bad data.</summary>
    public static IReadOnlyList<Problem> Load(string path)
    {
        if (!File.Exists(path)) throw new TaskDataException($"file not found: {path}");
        using var reader = new StreamReader(path);
        return Parse(reader, Path.GetFileName(path));
    }

    public static IReadOnlyList<Problem> Parse(TextReader reader, string sourceName)
    {
        var problems = new List<Problem>();
        foreach (var (lineNumber, value) in Jsonl.ReadObjects(reader, sourceName))
        {
            var question = Jsonl.RequiredString(value, "question", sourceName, lineNumber);
            var answer = Jsonl.RequiredString(value, "answer", sourceName, lineNumber);
            var reference = ReferenceAnswer(answer)
                ?? throw new TaskDataException($"{sourceName} line {lineNumber}: answer has no final line \"#### N\" with a number");
            problems.Add(new Problem(PromptFor(question), reference, SolutionFor(answer)));
        }
        return problems;
    }

    /// <summary>The canonical number after the last "####" of a GSM8K answer, or null.</summary>
    public static string? ReferenceAnswer(string answerText)
    {
        int marker = answerText.LastIndexOf("####", StringComparison.Ordinal);
        return marker < 0 ? null : AnswerExtraction.Canonical(answerText[(marker + 4)..]);
    }

    /// <summary>1 when the completion's extracted answer equals <paramref name="reference"/> as a number, else 0.</summary>
    public static double Reward(string reference, string completion) =>
        AnswerExtraction.SameNumber(AnswerExtraction.Extract(completion), reference) ? 1.0 : 0.0;

    public static string PromptFor(string question) => question.Trim() + "\n";

    /// <summary>The worked answer without calculator annotations: "= <<16-3-4=9>>9" -> "= 9".</summary>
    public static string SolutionFor(string answerText) => CalculatorAnnotation().Replace(answerText, "").Trim();

    [GeneratedRegex("<<[^<>]*>>")]
    private static partial Regex CalculatorAnnotation();
}

/// <summary>GSM8K as an RL task: training problems from train.jsonl, held-out ones from test.jsonl in file order.
/// Either list may be empty (a task for evaluation only, or for training only).</summary>
public sealed class Gsm8kTask : IRlTask
{
    private readonly IReadOnlyList<Problem> training;
    private readonly IReadOnlyList<Problem> test;

    public Gsm8kTask(IReadOnlyList<Problem> training, IReadOnlyList<Problem> test)
    {
        var testPrompts = test.Select(p => p.Prompt).ToHashSet();
        this.training = training.Where(p => !testPrompts.Contains(p.Prompt)).ToList();
        this.test = test;
    }

    /// <summary>Loads <paramref name="directory"/>/train.jsonl and test.jsonl.</summary>
    public static Gsm8kTask FromDirectory(string directory) =>
        new(Gsm8k.Load(Path.Combine(directory, "train.jsonl")), Gsm8k.Load(Path.Combine(directory, "test.jsonl")));

    public string Name => "gsm8k";

    public int TrainingCount => training.Count;

    /// <summary>TaskDataException when there are no training problems (a task made for evaluation only).</summary>
    public Problem SampleTraining(Rng rng) => training.Count > 0 ? training[rng.NextInt(training.Count)]
        : throw new TaskDataException("gsm8k: no training problems (none given, or all of them are also test problems)");

    /// <summary>The first <paramref name="count"/> test problems (all of them when there are fewer).</summary>
    public IReadOnlyList<Problem> HeldOut(int count) => test.Take(count).ToList();

    public string? ExtractAnswer(string completion) => AnswerExtraction.Extract(completion);

    public double Reward(Problem problem, string completion) => Gsm8k.Reward(problem.Answer, completion);
}
