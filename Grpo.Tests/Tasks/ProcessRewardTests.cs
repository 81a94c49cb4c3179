using Grpo.Tasks;

namespace Grpo.Tests.Tasks;

public class ProcessRewardTests
{
    // DeepSeekMath's example, in this task's format: 12 * 50 = 600, then 600 / 60 = 10.
    private static readonly Problem Wage = new(
        "Sam earns $12 an hour baking. He works 50 minutes. How much is he paid?\n", "10",
        "12 * 50 = 600\n600 / 60 = 10\nAnswer: 10");

    private static readonly ArithmeticTask Arithmetic = new();

    /// <summary>The verdicts of the reasoning steps alone (ArithmeticSteps.Score: no answer step).</summary>
    private static StepVerdict[] Verdicts(string completion) =>
        ArithmeticSteps.Score(Wage.Prompt, Wage.Solution, completion).Select(s => s.Verdict).ToArray();

    [Fact]
    public void ReferenceStepsAreCorrectAndEndWhereTheirLinesEnd()
    {
        // "12 * 50 = 600" is 13 characters: it ends at 13; the next line starts at 14 and ends at 27;
        // the answer line "Answer: 10" (28..38) is the last step and ends at the completion's end, 38.
        var steps = Arithmetic.StepRewards(Wage, "12 * 50 = 600\n600 / 60 = 10\nAnswer: 10");
        Assert.Equal([new StepReward(13, 1.0, StepVerdict.Correct), new StepReward(27, 1.0, StepVerdict.Correct),
            new StepReward(38, 1.0, StepVerdict.Correct)], steps);
    }

    [Fact]
    public void MultiplicationInEitherOrderIsTheSameStep()
    {
        Assert.Equal([StepVerdict.Correct, StepVerdict.Correct], Verdicts("50 * 12 = 600\n600 / 60 = 10\nAnswer: 10"));
    }

    [Fact]
    public void WrongArithmeticIsWrong()
    {
        // 12 * 50 is 600, not 500; the next step then divides a number that was never computed.
        Assert.Equal([StepVerdict.WrongArithmetic, StepVerdict.UnknownOperand], Verdicts("12 * 50 = 500\n600 / 60 = 10\nAnswer: 10"));
    }

    [Fact]
    public void RightArithmeticButTheWrongStepForTheQuestionIsWrong()
    {
        // 12 + 50 = 62 is true, but adding the rate to the minutes is no step of this problem.
        var steps = ArithmeticSteps.Score(Wage.Prompt, Wage.Solution, "12 + 50 = 62\nAnswer: 62");
        Assert.Equal(new StepReward(12, -1.0, StepVerdict.NotNeeded), Assert.Single(steps));
        // 60 is a given (minutes in an hour) and 60 / 12 = 5 is true, but not needed.
        Assert.Equal([StepVerdict.NotNeeded], Verdicts("60 / 12 = 5"));
    }

    [Fact]
    public void AnOperandFromNowhereIsWrong()
    {
        // 600 is neither in the question nor an earlier result: the model skipped (or guessed) a step.
        Assert.Equal([StepVerdict.UnknownOperand], Verdicts("600 / 60 = 10\nAnswer: 10"));
    }

    [Fact]
    public void RepeatsAreNotCreditedTwice()
    {
        Assert.Equal([StepVerdict.Correct, StepVerdict.NotNeeded, StepVerdict.Correct],
            Verdicts("12 * 50 = 600\n12 * 50 = 600\n600 / 60 = 10\nAnswer: 10"));
    }

    [Fact]
    public void UnparsedLinesAreWrongAndBlankLinesAndLinesAfterTheAnswerAreNotSteps()
    {
        // Lines: "he earns ten" (0..12), "" (13), "12 * 50 = 600" (14..27), then the answer and a stray
        // line, which the answer step covers to the end (48 characters in all).
        var steps = Arithmetic.StepRewards(Wage, "he earns ten\n\n12 * 50 = 600\nAnswer: 10\n1 + 1 = 3");
        Assert.Equal([new StepReward(12, -1.0, StepVerdict.Unparsed), new StepReward(27, 1.0, StepVerdict.Correct),
            new StepReward(48, 1.0, StepVerdict.Correct)], steps);
    }

    [Fact]
    public void ASubtractionMustKeepItsOrder()
    {
        var change = new Problem("Jo buys 3 pens at $4 each and pays $20. How much change does she get?\n", "8",
            "3 * 4 = 12\n20 - 12 = 8\nAnswer: 8");
        // 12 - 20 = -8 is true arithmetic on known numbers but the wrong way round.
        Assert.Equal([StepVerdict.Correct, StepVerdict.NotNeeded, StepVerdict.WrongAnswer],
            Arithmetic.StepRewards(change, "4 * 3 = 12\n12 - 20 = -8\nAnswer: -8").Select(s => s.Verdict));
    }

    [Fact]
    public void NoReasoningStepsLeaveOnlyTheAnswerStep()
    {
        Assert.Empty(ArithmeticSteps.Score(Wage.Prompt, Wage.Solution, "Answer: 10"));
        Assert.Equal([new StepReward(10, 1.0, StepVerdict.Correct)], Arithmetic.StepRewards(Wage, "Answer: 10"));
        // An empty completion gives no answer: one wrong step at 0 (the trainer puts it on the EOS token).
        Assert.Equal([new StepReward(0, -1.0, StepVerdict.WrongAnswer)], Arithmetic.StepRewards(Wage, ""));
    }

    [Fact]
    public void AMissingOrWrongAnswerIsAWrongLastStep()
    {
        // Right steps, no answer line: the answer step ends where the last line does (27).
        Assert.Equal([new StepReward(13, 1.0, StepVerdict.Correct), new StepReward(27, 1.0, StepVerdict.Correct),
            new StepReward(27, -1.0, StepVerdict.WrongAnswer)], Arithmetic.StepRewards(Wage, "12 * 50 = 600\n600 / 60 = 10"));
        // Right steps, the answer miscopied: only the last step is wrong.
        Assert.Equal([StepVerdict.Correct, StepVerdict.Correct, StepVerdict.WrongAnswer],
            Arithmetic.StepRewards(Wage, "12 * 50 = 600\n600 / 60 = 10\nAnswer: 11").Select(s => s.Verdict));
    }
}
