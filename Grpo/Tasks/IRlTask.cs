// What a task is to the trainer: problems (a prompt, the reference answer, a worked solution for the
// SFT warm-up) and a verifier that scores a sampled completion. DeepSeekMath's GRPO needs only this
// (section 4.1: "the rewards of the outputs ... are scored by the reward model"; here a rule-based
// verifier, as in the later R1 recipe). Process supervision (section 4.1.3) also needs a reward per
// reasoning step, which tasks that can check their steps supply through IProcessRewardTask.
// Tasks know nothing of models or tokens: completions are strings, and step ends are character
// indices that the trainer maps to tokens.
// Tests: Grpo.Tests/Tasks/ArithmeticTaskTests.cs, Gsm8kTests.cs, ProcessRewardTests.cs.
using Grpo.Sampling;

namespace Grpo.Tasks;

/// <summary>One problem. <paramref name="Answer"/> is the reference final answer as a canonical number
/// string ("18", "-3", "2.5"); <paramref name="Solution"/> is a worked solution the model can be
/// fine-tuned on (the completion that should follow <paramref name="Prompt"/>).</summary>
public sealed record Problem(string Prompt, string Answer, string Solution);

/// <summary>A source of problems with a verifier (named so as not to clash with System.Threading.Tasks.Task).</summary>
public interface IRlTask
{
    string Name { get; }

    /// <summary>One training problem drawn with <paramref name="rng"/>; never one of <see cref="HeldOut"/>'s.</summary>
    Problem SampleTraining(Rng rng);

    /// <summary>The first <paramref name="count"/> held-out problems (fewer when the task has fewer): the
    /// same list every call, distinct as strings, and disjoint from everything <see cref="SampleTraining"/> can return.</summary>
    IReadOnlyList<Problem> HeldOut(int count);

    /// <summary>The completion's final answer as a canonical number string, or null when it gives none.
    /// Two completions agree (for majority voting) exactly when these strings are equal.</summary>
    string? ExtractAnswer(string completion);

    /// <summary>The outcome reward: 1 when the completion's final answer equals the reference, else 0
    /// (or a task's small format reward).</summary>
    double Reward(Problem problem, string completion);
}

/// <summary>Why a step got its reward (see ArithmeticTask.StepRewards for the rule).</summary>
public enum StepVerdict
{
    /// <summary>A step of the reference solution, on operands the question or earlier steps supplied.</summary>
    Correct,
    /// <summary>The line is not of the form "a op b = c".</summary>
    Unparsed,
    /// <summary>a op b is not c.</summary>
    WrongArithmetic,
    /// <summary>An operand appears neither in the question nor as an earlier step's result.</summary>
    UnknownOperand,
    /// <summary>Right arithmetic on known numbers, but not a step the question needs (or a repeat).</summary>
    NotNeeded,
    /// <summary>The final answer (the last step) is missing or not the reference.</summary>
    WrongAnswer,
}

/// <summary>The reward of one reasoning step. <paramref name="EndIndex"/> is the index in the completion
/// just past the step's last character (where its newline is, or the completion's length).</summary>
public readonly record struct StepReward(int EndIndex, double Reward, StepVerdict Verdict);

/// <summary>A task that can score each reasoning step of a completion (process supervision).</summary>
public interface IProcessRewardTask : IRlTask
{
    /// <summary>One reward per step, in order, each ending at a character index of the completion; a step
    /// ending at the completion's length ends at its last token (its EOS too). Tokens after the last step
    /// get no process advantage, so a task's final answer should be a step.</summary>
    IReadOnlyList<StepReward> StepRewards(Problem problem, string completion);
}
