using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Tests.Tasks;

public class ArithmeticTaskTests
{
    public static TheoryData<ArithmeticDifficulty> Difficulties => new() { ArithmeticDifficulty.Easy, ArithmeticDifficulty.Hard };

    [Fact]
    public void WageSolutionHasTheFixedFormat()
    {
        // DeepSeekMath's example: $12 an hour, 50 minutes -> 12 * 50 = 600 cents-of-an-hour, / 60 = $10.
        var solution = ArithmeticTask.SolutionFor([new(12, '*', 50), new(600, '/', 60)]);
        Assert.Equal("12 * 50 = 600\n600 / 60 = 10\nAnswer: 10", solution);
    }

    [Theory, MemberData(nameof(Difficulties))]
    public void WorkedSolutionsEarnFullRewardAndEveryStepIsCorrect(ArithmeticDifficulty difficulty)
    {
        var task = new ArithmeticTask(difficulty);
        var rng = new Rng(1);
        for (int i = 0; i < 2000; i++)
        {
            var problem = task.SampleTraining(rng);
            Assert.Equal(1.0, task.Reward(problem, problem.Solution));
            Assert.Equal(problem.Answer, task.ExtractAnswer(problem.Solution));
            Assert.All(task.StepRewards(problem, problem.Solution), step => Assert.Equal(StepVerdict.Correct, step.Verdict));
        }
    }

    [Fact]
    public void WrongAnswerScoresZeroOrTheFormatReward()
    {
        var problem = new Problem("Sam has 3 pens. He gets 5 more. How many pens does he have now?\n", "8", "3 + 5 = 8\nAnswer: 8");
        var plain = new ArithmeticTask();
        var withFormat = new ArithmeticTask(formatReward: 0.1);
        Assert.Equal(1.0, plain.Reward(problem, "3 + 5 = 8\nAnswer: 8"));
        Assert.Equal(1.0, plain.Reward(problem, "Answer: 8.0"));
        Assert.Equal(0.0, plain.Reward(problem, "3 + 5 = 9\nAnswer: 9"));
        Assert.Equal(0.1, withFormat.Reward(problem, "3 + 5 = 9\nAnswer: 9"));
        Assert.Equal(1.0, withFormat.Reward(problem, "3 + 5 = 8\nAnswer: 8"));
        // No answer line, or an answer line without a number: no format reward either.
        Assert.Equal(0.0, withFormat.Reward(problem, "3 + 5 = 8"));
        Assert.Equal(0.0, withFormat.Reward(problem, "Answer: eight"));
        // The FIRST answer line counts: hedging "9 then 8" earns nothing.
        Assert.Equal(0.0, plain.Reward(problem, "Answer: 9\nAnswer: 8"));
    }

    [Theory, MemberData(nameof(Difficulties))]
    public void EveryProblemFitsTheLengthBudgetAndTheAlphabet(ArithmeticDifficulty difficulty)
    {
        var task = new ArithmeticTask(difficulty);
        var rng = new Rng(2);
        int longest = 0;
        var characters = new HashSet<char>();
        for (int i = 0; i < 50_000; i++)
        {
            var problem = task.SampleTraining(rng);
            var text = problem.Prompt + problem.Solution;
            longest = Math.Max(longest, text.Length);
            Assert.True(text.Length <= ArithmeticTask.MaxChars, $"{text.Length} chars: {text}");
            characters.UnionWith(text);
        }
        Assert.Subset(ArithmeticTask.Alphabet.ToHashSet(), characters);
        Assert.True(longest > ArithmeticTask.MaxChars - 40, $"longest {longest}: the sample should reach near the budget");
    }

    [Theory, MemberData(nameof(Difficulties))]
    public void HeldOutIsDistinctAndDisjointFromALargeTrainingSample(ArithmeticDifficulty difficulty)
    {
        var task = new ArithmeticTask(difficulty);
        var heldOut = task.HeldOut(1000);
        Assert.Equal(1000, heldOut.Select(p => p.Prompt).Distinct().Count());
        var heldOutPrompts = heldOut.Select(p => p.Prompt).ToHashSet();
        var rng = new Rng(3);
        for (int i = 0; i < 100_000; i++)
            Assert.DoesNotContain(task.SampleTraining(rng).Prompt, heldOutPrompts);
    }

    [Fact]
    public void TrainingProblemsAreMostlyDistinctStrings()
    {
        // Long name and item lists: a leak-prone task would repeat prompts often.
        var task = new ArithmeticTask();
        var rng = new Rng(4);
        var prompts = Enumerable.Range(0, 10_000).Select(_ => task.SampleTraining(rng).Prompt).ToHashSet();
        Assert.True(prompts.Count > 9_500, $"{prompts.Count} distinct of 10000");
    }

    [Fact]
    public void SameSeedGivesTheSameProblems()
    {
        var task = new ArithmeticTask();
        var (first, second) = (new Rng(42), new Rng(42));
        for (int i = 0; i < 200; i++) Assert.Equal(task.SampleTraining(first), task.SampleTraining(second));
        // Held-out lists: the same from a fresh task, and a shorter list is a prefix of a longer one.
        var longer = new ArithmeticTask().HeldOut(300);
        Assert.Equal(longer, task.HeldOut(300));
        Assert.Equal(longer.Take(100), task.HeldOut(100));
        Assert.NotEqual(longer, new ArithmeticTask(heldOutSeed: 99).HeldOut(300));
    }

    [Fact]
    public void EasyDefaultUsesSingleDigitOperandsExceptTheWageAndDivisionTotals()
    {
        var task = new ArithmeticTask();
        var rng = new Rng(5);
        for (int i = 0; i < 5000; i++)
        {
            var problem = task.SampleTraining(rng);
            var steps = ArithmeticSteps.ParseSolution(problem.Solution);
            if (problem.Prompt.Contains("an hour"))
            {
                Assert.Equal(2, steps.Count);
                Assert.InRange(steps[0].Left, 6, 30);
                Assert.InRange(steps[0].Right, 10, 50);
            }
            else
            {
                var step = Assert.Single(steps);
                Assert.InRange(step.Right, 1, 9);
                if (step.Operator != '/') Assert.InRange(step.Left, 1, 9);
                else Assert.InRange(step.Result, 1, 9);
            }
        }
    }
}
