using Grpo.Rl;
using Grpo.Tasks;

namespace Grpo.Tests;

public class RewardsTests
{
    private static readonly Problem Question = new("q", "7", "Answer: 7");

    [Fact]
    public void WeightsCombineAsAWeightedSum()
    {
        // r = 1.0 * correct + 0.5 * format. "Answer: 7": correct 1, format 1 -> 1.5.
        // "Answer: 8": correct 0, format 1 -> 0.5. "no idea": 0 and 0 -> 0.
        var task = new ArithmeticTask();
        var rewards = Rewards.ForTask(task, formatWeight: 0.5);
        var (total, perFunction) = rewards.Score([Question, Question, Question], ["Answer: 7", "Answer: 8", "no idea"]);
        Assert.Equal([1.5f, 0.5f, 0f], total);
        Assert.Equal([1.0, 0.0, 0.0], perFunction[0]);
        Assert.Equal([1.0, 1.0, 0.0], perFunction[1]);
    }

    [Fact]
    public void AThrowingRewardGivesZeroAndIsCountedWithItsFirstMessage()
    {
        // 2 * (throws) + 1 * 0.25: the throwing function adds 0, the other still counts.
        var rewards = new Rewards([
            new("broken", 2.0, (_, completion) => completion == "bad" ? throw new InvalidOperationException("cannot score") : 1.0),
            new("quarter", 1.0, (_, _) => 0.25)]);
        var (total, _) = rewards.Score([Question, Question], ["bad", "good"]);
        Assert.Equal([0.25f, 2.25f], total);
        Assert.Equal(1, rewards.Errors);
        Assert.Equal("reward 'broken' threw InvalidOperationException: cannot score", rewards.FirstError);
    }
}
