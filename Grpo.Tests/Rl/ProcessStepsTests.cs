// Process supervision end to end (DeepSeekMath section 4.1.3): the arithmetic task's step rewards,
// mapped to tokens by ProcessSteps, through Advantages.Process, give per-token advantages that change
// within an output at its step ends; and the trainer's dynamic sampling keeps the groups that give a
// gradient under each method.
using Grpo.Model;
using Grpo.Rl;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Tests;

public class ProcessStepsTests
{
    private static readonly Problem Wage = new(
        "Sam earns $12 an hour baking. He works 50 minutes. How much is he paid?\n", "10",
        "12 * 50 = 600\n600 / 60 = 10\nAnswer: 10");

    private static readonly CharTokenizer Tokenizer = new(ArithmeticTask.Alphabet);

    [Fact]
    public void StepEndsMapToTheTokenThatEndsTheLineAndTheAnswerToTheEos()
    {
        // One token a character, then EOS: 38 characters -> 39 tokens. Steps end at characters 13, 27
        // and 38 (the answer, at the end of the text): tokens 12 and 26 (the last digit of each line)
        // and 38, the EOS, which decodes to nothing but ends the output.
        var tokens = Tokenizer.Encode(Wage.Solution, addEos: true);
        Assert.Equal(39, tokens.Length);
        var (rewards, ends) = ProcessSteps.ForOutputs(new ArithmeticTask(), Tokenizer, [Wage], [tokens], [Wage.Solution], [1f])[0];
        Assert.Equal([1f, 1f, 1f], rewards);
        Assert.Equal([12, 26, 38], ends);
    }

    [Fact]
    public void PerTokenAdvantagesDifferWithinAnOutput()
    {
        // A group of two: the worked solution (steps +1, +1, answer +1) and one whose second step is
        // wrong, 600 / 60 = 12 (steps +1, -1, answer -1). All six step rewards R = {1, 1, 1, 1, -1, -1}:
        // mean 1/3, population std sqrt(1 - 1/9) = 0.9428; +1 -> 0.7071, -1 -> -1.4142.
        // A token's advantage sums the normalised rewards of the steps ending at or after it:
        //   right output: tokens 0..12 -> 3 x 0.7071 = 2.1213, 13..26 -> 1.4142, 27..38 -> 0.7071
        //   wrong output: tokens 0..12 -> 0.7071 - 2 x 1.4142 = -2.1213, 13..26 -> -2.8284, 27..38 -> -1.4142
        string wrong = "12 * 50 = 600\n600 / 60 = 12\nAnswer: 12";
        var texts = new[] { Wage.Solution, wrong };
        var tokens = texts.Select(t => Tokenizer.Encode(t, addEos: true)).ToArray();
        var task = new ArithmeticTask();
        var steps = ProcessSteps.ForOutputs(task, Tokenizer, [Wage, Wage], tokens, texts, [1f, 0f]);
        Assert.Equal([1f, -1f, -1f], steps[1].Rewards);
        var advantages = Advantages.Process(steps.Select(s => s.Rewards).ToArray(), steps.Select(s => s.Ends).ToArray(),
            tokens.Select(t => t.Length).ToArray(), groupSize: 2);
        void Expect(float[] perToken, double first, double second, double answer)
        {
            for (int t = 0; t < perToken.Length; t++)
                Assert.Equal(t <= 12 ? first : t <= 26 ? second : answer, perToken[t], 1e-4);
        }
        Expect(advantages[0], 2.1213, 1.4142, 0.7071);
        Expect(advantages[1], -2.1213, -2.8284, -1.4142);
        Assert.True(advantages[1].Distinct().Count() == 3, "the wrong output's advantage changes at its step ends");
    }

    [Fact]
    public void TwoStepsEndingInOneTokenBothCountFromThatToken()
    {
        // A tokenizer whose token 0 covers characters 0..4 and token 1 characters 5..13: steps ending at
        // characters 3 and 5 both end in token 0; the last step, at the text's end, in token 1.
        var steps = new[] { new StepReward(3, 1, StepVerdict.Correct), new StepReward(5, -1, StepVerdict.WrongArithmetic), new StepReward(14, 1, StepVerdict.Correct) };
        var (rewards, ends) = ProcessSteps.ToTokens(steps, [5, 14], 2, 0f);
        Assert.Equal([0, 0, 1], ends);
        // Group of two with the other output one step of reward 1 at token 0: R = {1, -1, 1, 1}, mean 0.5,
        // std sqrt(1 - 0.25) = 0.8660; 1 -> 0.5774, -1 -> -1.7321. Token 0 of the first output:
        // 0.5774 - 1.7321 + 0.5774 = -0.5774; token 1: 0.5774.
        var advantages = Advantages.Process([rewards, [1f]], [ends, [0]], [2, 1], groupSize: 2);
        Assert.Equal(-0.5774, advantages[0][0], 1e-4);
        Assert.Equal(0.5774, advantages[0][1], 1e-4);
    }

    [Fact]
    public void AnOutputWithNoStepIsOneStepRewardedByItsOutcome()
    {
        var (rewards, ends) = ProcessSteps.ToTokens([], [1, 2, 3, 3], 4, 0.5f);
        Assert.Equal([0.5f], rewards);
        Assert.Equal([3], ends);
    }
}
