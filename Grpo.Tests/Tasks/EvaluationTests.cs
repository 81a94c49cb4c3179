using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Rl;

namespace Grpo.Tests.Tasks;

public class EvaluationTests
{
    [Fact]
    public void PassAtKByHand()
    {
        // n=4, c=2, k=2: 1 - C(2,2)/C(4,2) = 1 - 1/6 = 0.8333
        Assert.Equal(5.0 / 6.0, Evaluation.PassAtK(4, 2, 2), 12);
        // n=5, c=1, k=2: 1 - C(4,2)/C(5,2) = 1 - 6/10 = 0.4
        Assert.Equal(0.4, Evaluation.PassAtK(5, 1, 2), 12);
        // n=4, c=3, k=2: fewer than k wrong, so every pair holds a right one.
        Assert.Equal(1.0, Evaluation.PassAtK(4, 3, 2));
        Assert.Equal(0.0, Evaluation.PassAtK(4, 0, 4));
        // Large n does not overflow: n=1000, c=10, k=100 is 1 - prod_{i=991..1000}(1 - 100/i), about 0.6531.
        Assert.Equal(0.6531, Evaluation.PassAtK(1000, 10, 100), 3);
    }

    [Fact]
    public void PassAtKOverProblemsIsTheMean()
    {
        // Problem 1: 2 of 4 right -> pass@2 = 5/6; problem 2: 0 of 4 -> 0. Mean 5/12.
        IReadOnlyList<IReadOnlyList<bool>> samples = [[true, false, true, false], [false, false, false, false]];
        Assert.Equal(5.0 / 12.0, Evaluation.PassAtK(samples, 2), 12);
    }

    [Fact]
    public void AccuracyByHand()
    {
        Assert.Equal(0.75, Evaluation.Accuracy([true, true, false, true]));
        Assert.Throws<ArgumentException>(() => Evaluation.Accuracy([]));
    }

    [Property(MaxTest = 200)]
    public bool PassAtKIsMonotoneInK(PositiveInt n0, NonNegativeInt c0)
    {
        int n = n0.Get % 64 + 1, c = c0.Get % (n + 1);
        for (int k = 1; k < n; k++)
            if (Evaluation.PassAtK(n, c, k + 1) < Evaluation.PassAtK(n, c, k) - 1e-12) return false;
        return true;
    }

    [Property(MaxTest = 200)]
    public bool PassAtOneIsTheRightFractionAndPassAtNIsOneExactlyWhenAnyIsRight(PositiveInt n0, NonNegativeInt c0)
    {
        int n = n0.Get % 64 + 1, c = c0.Get % (n + 1);
        return Math.Abs(Evaluation.PassAtK(n, c, 1) - (double)c / n) < 1e-12
            && Evaluation.PassAtK(n, c, n) == (c > 0 ? 1.0 : 0.0);
    }

    [Property(MaxTest = 100)]
    public bool PassAtKMatchesTheBinomialFormula(PositiveInt n0, NonNegativeInt c0, PositiveInt k0)
    {
        // Against 1 - C(n-c, k)/C(n, k) computed with exact integers for small n.
        int n = n0.Get % 20 + 1, c = c0.Get % (n + 1), k = k0.Get % n + 1;
        double expected = 1.0 - (double)Binomial(n - c, k) / (double)Binomial(n, k);
        return Math.Abs(Evaluation.PassAtK(n, c, k) - expected) < 1e-12;
    }

    [Fact]
    public void MajorityVoteBreaksTiesByFirstAppearance()
    {
        // "3" and "5" have two votes each within the first 4; "5" appeared first.
        Assert.Equal("5", Evaluation.MajorityAnswer(["5", "3", "3", "5", "3"], 4));
        // With 5 samples "3" has three votes and wins outright.
        Assert.Equal("3", Evaluation.MajorityAnswer(["5", "3", "3", "5", "3"], 5));
        // Null answers do not vote: "7" wins with one vote against none.
        Assert.Equal("7", Evaluation.MajorityAnswer([null, null, "7"], 3));
        Assert.Null(Evaluation.MajorityAnswer([null, null, "7"], 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Evaluation.MajorityAnswer(["1"], 2));
    }

    [Fact]
    public void MajAtKByHand()
    {
        // Problem 1 (ref 4): votes 4,4,2 -> 4 right. Problem 2 (ref 9): votes 1,9 tie -> 1 (first) wrong.
        // Problem 3 (ref 2): no answers -> wrong. maj@3 = 1/3; for problem 2, k counts only its first 3.
        IReadOnlyList<IReadOnlyList<string?>> answers = [["4", "2", "4"], ["1", "9", null], [null, null, null]];
        Assert.Equal(1.0 / 3.0, Evaluation.MajAtK(answers, ["4", "9", "2"], 3), 12);
        // maj@1 is the first sample's answer: only problem 1's "4" is right.
        Assert.Equal(1.0 / 3.0, Evaluation.MajAtK(answers, ["4", "9", "2"], 1), 12);
    }

    [Property(MaxTest = 100)]
    public bool MajorityOfIdenticalAnswersIsThatAnswer(PositiveInt k0, int value)
    {
        int k = k0.Get % 16 + 1;
        var answers = Enumerable.Repeat<string?>(value.ToString(), k).ToList();
        return Evaluation.MajorityAnswer(answers, k) == value.ToString();
    }

    private static System.Numerics.BigInteger Binomial(int n, int k)
    {
        if (k > n) return 0;
        System.Numerics.BigInteger result = 1;
        for (int i = 1; i <= k; i++) result = result * (n - k + i) / i;
        return result;
    }
}
