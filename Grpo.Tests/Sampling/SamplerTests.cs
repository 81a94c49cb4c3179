// Tests of Sampling/Sampler.cs: hand-worked filters on a four-token distribution, FsCheck properties
// stating each filter's law over random logits, seeded reproducibility, and a chi-square test of the
// draw against the distribution it claims to draw from.
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Sampling;

namespace Grpo.Tests.Sampling;

public class SamplerTests
{
    // logits = ln [1, 2, 3, 4] -> softmax = [0.1, 0.2, 0.3, 0.4].
    private static readonly float[] TenTwentyThirtyForty = [0f, MathF.Log(2f), MathF.Log(3f), MathF.Log(4f)];

    [Fact]
    public void FiltersByHand()
    {
        AssertClose([0.1f, 0.2f, 0.3f, 0.4f], Sampler.ProbabilitiesAfterFilters(TenTwentyThirtyForty, new SamplerOptions()));
        // Temperature 0.5 squares the probabilities: [1, 4, 9, 16] / 30.
        AssertClose([1 / 30f, 4 / 30f, 9 / 30f, 16 / 30f], Sampler.ProbabilitiesAfterFilters(TenTwentyThirtyForty, new SamplerOptions(Temperature: 0.5f)));
        // Top-k 2 keeps 0.3 and 0.4 -> [0, 0, 3/7, 4/7].
        AssertClose([0, 0, 3 / 7f, 4 / 7f], Sampler.ProbabilitiesAfterFilters(TenTwentyThirtyForty, new SamplerOptions(TopK: 2)));
        // Top-p 0.5: sorted 0.4 (mass 0.4 < 0.5), 0.3 (mass 0.7 >= 0.5) -> keep two -> [0, 0, 3/7, 4/7].
        AssertClose([0, 0, 3 / 7f, 4 / 7f], Sampler.ProbabilitiesAfterFilters(TenTwentyThirtyForty, new SamplerOptions(TopP: 0.5f)));
        // Top-p 0.35: 0.4 alone reaches it -> one-hot on token 3.
        AssertClose([0, 0, 0, 1], Sampler.ProbabilitiesAfterFilters(TenTwentyThirtyForty, new SamplerOptions(TopP: 0.35f)));
        // Min-p 0.6: threshold 0.6 * 0.4 = 0.24 drops 0.1 and 0.2 -> [0, 0, 3/7, 4/7].
        AssertClose([0, 0, 3 / 7f, 4 / 7f], Sampler.ProbabilitiesAfterFilters(TenTwentyThirtyForty, new SamplerOptions(MinP: 0.6f)));
        // Min-p 0.3: threshold 0.12 drops only 0.1 -> [0, 2, 3, 4] / 9.
        AssertClose([0, 2 / 9f, 3 / 9f, 4 / 9f], Sampler.ProbabilitiesAfterFilters(TenTwentyThirtyForty, new SamplerOptions(MinP: 0.3f)));
        // Top-k 3 then top-p 0.6: [0, 2, 3, 4] / 9, sorted 4/9 = 0.44 < 0.6, + 3/9 = 0.78 >= 0.6 -> [0, 0, 3/7, 4/7].
        AssertClose([0, 0, 3 / 7f, 4 / 7f], Sampler.ProbabilitiesAfterFilters(TenTwentyThirtyForty, new SamplerOptions(TopK: 3, TopP: 0.6f)));
        // Temperature 0 is one-hot on the argmax.
        AssertClose([0, 0, 0, 1], Sampler.ProbabilitiesAfterFilters(TenTwentyThirtyForty, SamplerOptions.Greedy));
    }

    [Fact]
    public void DrawIsTheInverseCdfAndSkipsZeros()
    {
        // probabilities [0.5, 0, 0.5]: cumulative 0.5 at token 0, 1.0 at token 2.
        float[] probabilities = [0.5f, 0f, 0.5f];
        Assert.Equal(0, Sampler.Draw(probabilities, 0.49f));
        Assert.Equal(2, Sampler.Draw(probabilities, 0.5f));
        Assert.Equal(2, Sampler.Draw(probabilities, 0.99999f));
        // A coin past a total that rounded below 1 still lands on a token that can be drawn, never a zero.
        Assert.Equal(0, Sampler.Draw([0.3f, 0f], 0.999f));
    }

    [Fact]
    public void LogProbabilityByHand()
    {
        // logits [0, ln 3, -inf]: softmax [1/4, 3/4, 0] -> log 3/4 = -0.287682.
        float[] logits = [0f, MathF.Log(3f), float.NegativeInfinity];
        Assert.Equal(-0.287682f, Sampler.LogProbability(logits, 1), 5);
        Assert.Equal(MathF.Log(0.25f), Sampler.LogProbability(logits, 0), 5);
        Assert.Equal(float.NegativeInfinity, Sampler.LogProbability(logits, 2));
    }

    [Fact]
    public void BadOptionsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SamplerOptions(Temperature: -1f).Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new SamplerOptions(TopK: -1).Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new SamplerOptions(TopP: 0f).Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new SamplerOptions(MinP: 1.5f).Validate());
        new SamplerOptions(Temperature: 0.7f, TopK: 5, TopP: 0.9f, MinP: 0.05f).Validate();
    }

    [Property(MaxTest = 200)]
    public bool TopKKeepsExactlyTheKLargest(int seed)
    {
        var rng = new Rng((ulong)seed);
        var logits = RandomLogits(rng, out int vocab);
        int k = rng.NextInt(1, vocab);
        var kept = Sampler.ProbabilitiesAfterFilters(logits, new SamplerOptions(TopK: k));
        var keptIndices = Enumerable.Range(0, vocab).Where(i => kept[i] > 0).ToArray();
        var droppedIndices = Enumerable.Range(0, vocab).Where(i => kept[i] == 0).ToArray();
        bool everyKeptAtLeastEveryDropped = droppedIndices.Length == 0 ||
            keptIndices.Min(i => logits[i]) >= droppedIndices.Max(i => logits[i]);
        return keptIndices.Length == k && everyKeptAtLeastEveryDropped && SumsToOne(kept)
            && ProportionalToSoftmax(logits, kept, keptIndices);
    }

    [Property(MaxTest = 200)]
    public bool TopPKeepsTheSmallestSetWhoseMassReachesP(int seed)
    {
        var rng = new Rng((ulong)seed);
        var logits = RandomLogits(rng, out int vocab);
        float p = 0.05f + 0.9f * rng.NextFloat();
        var original = Softmax(logits);
        var kept = Sampler.ProbabilitiesAfterFilters(logits, new SamplerOptions(TopP: p));
        var keptIndices = Enumerable.Range(0, vocab).Where(i => kept[i] > 0).ToArray();
        var droppedIndices = Enumerable.Range(0, vocab).Where(i => kept[i] == 0).ToArray();
        double keptMass = keptIndices.Sum(i => original[i]);
        double smallestKept = keptIndices.Min(i => original[i]);
        bool isMostProbable = droppedIndices.Length == 0 || smallestKept >= droppedIndices.Max(i => original[i]);
        const double slack = 1e-5; // float softmax against this double one
        return isMostProbable && keptMass >= p - slack && keptMass - smallestKept < p + slack
            && SumsToOne(kept) && ProportionalToSoftmax(logits, kept, keptIndices);
    }

    [Property(MaxTest = 200)]
    public bool MinPDropsExactlyTheTokensBelowPTimesTheMax(int seed)
    {
        var rng = new Rng((ulong)seed);
        var logits = RandomLogits(rng, out int vocab);
        float minP = rng.NextFloat();
        var original = Softmax(logits);
        double threshold = minP * original.Max();
        var kept = Sampler.ProbabilitiesAfterFilters(logits, new SamplerOptions(MinP: minP));
        for (int i = 0; i < vocab; i++)
        {
            if (Math.Abs(original[i] - threshold) < 1e-5 * threshold) continue; // on the boundary, float rounding decides
            if ((kept[i] > 0) != (original[i] >= threshold)) return false;
        }
        var keptIndices = Enumerable.Range(0, vocab).Where(i => kept[i] > 0).ToArray();
        return SumsToOne(kept) && ProportionalToSoftmax(logits, kept, keptIndices);
    }

    [Property(MaxTest = 200)]
    public bool TemperatureZeroIsArgMaxWithTiesToTheLowestIndex(int seed)
    {
        var rng = new Rng((ulong)seed);
        int vocab = rng.NextInt(1, 12);
        // Whole-number logits in [-2, 2] make ties common.
        var logits = Enumerable.Range(0, vocab).Select(_ => (float)rng.NextInt(-2, 2)).ToArray();
        int expected = Array.IndexOf(logits, logits.Max());
        return Sampler.Sample(logits, new SamplerOptions(Temperature: 0f, TopK: 3, TopP: 0.5f), rng) == expected;
    }

    [Property(MaxTest = 100)]
    public bool TheSameSeedGivesTheSameSamples(int seed, bool useFilters)
    {
        var logitsRng = new Rng((ulong)seed);
        var logits = RandomLogits(logitsRng, out int vocab);
        var options = useFilters ? new SamplerOptions(0.8f, TopK: vocab / 2 + 1, TopP: 0.9f, MinP: 0.05f) : new SamplerOptions();
        var first = new Rng((ulong)seed * 31 + 7);
        var second = new Rng((ulong)seed * 31 + 7);
        for (int draw = 0; draw < 50; draw++)
            if (Sampler.Sample(logits, options, first) != Sampler.Sample(logits, options, second)) return false;
        return true;
    }

    [Property(MaxTest = 100)]
    public bool SampleNeverDrawsAFilteredToken(int seed)
    {
        var rng = new Rng((ulong)seed);
        var logits = RandomLogits(rng, out int vocab);
        var options = new SamplerOptions(0.5f + rng.NextFloat(), TopK: rng.NextInt(0, vocab), TopP: 0.2f + 0.8f * rng.NextFloat(), MinP: 0.3f * rng.NextFloat());
        var kept = Sampler.ProbabilitiesAfterFilters(logits, options);
        for (int draw = 0; draw < 50; draw++)
            if (kept[Sampler.Sample(logits, options, rng)] == 0) return false;
        return true;
    }

    // Chi-square goodness of fit at a fixed seed (deterministic, so never flaky): statistic
    // sum_i (observed_i - expected_i)^2 / expected_i over the tokens that can be drawn, against the
    // 0.999 quantile of chi-square with (categories - 1) degrees of freedom: 16.266 for 3, 10.828 for 1.
    [Theory]
    [InlineData(1f, 0, 1f, new[] { 0.1, 0.2, 0.3, 0.4 }, 16.266)]
    [InlineData(0.5f, 0, 1f, new[] { 1 / 30.0, 4 / 30.0, 9 / 30.0, 16 / 30.0 }, 16.266)]
    [InlineData(1f, 2, 1f, new[] { 0, 0, 3 / 7.0, 4 / 7.0 }, 10.828)]
    [InlineData(1f, 0, 0.5f, new[] { 0, 0, 3 / 7.0, 4 / 7.0 }, 10.828)]
    public void EmpiricalFrequenciesPassAChiSquareTest(float temperature, int topK, float topP, double[] expected, double criticalValue)
    {
        const int draws = 40_000;
        var rng = new Rng(20240501);
        var counts = new int[expected.Length];
        var options = new SamplerOptions(temperature, topK, topP);
        for (int draw = 0; draw < draws; draw++) counts[Sampler.Sample(TenTwentyThirtyForty, options, rng)]++;
        double chiSquare = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] == 0) { Assert.Equal(0, counts[i]); continue; }
            double expectedCount = expected[i] * draws;
            chiSquare += (counts[i] - expectedCount) * (counts[i] - expectedCount) / expectedCount;
        }
        Assert.True(chiSquare < criticalValue, $"chi-square {chiSquare:F3} >= critical {criticalValue} (counts {string.Join(", ", counts)})");
    }

    private static float[] RandomLogits(Rng rng, out int vocab)
    {
        vocab = rng.NextInt(2, 24);
        var logits = new float[vocab];
        for (int i = 0; i < vocab; i++) logits[i] = 3f * rng.NextGaussian();
        return logits;
    }

    private static double[] Softmax(float[] logits)
    {
        double max = logits.Max();
        var exps = logits.Select(l => Math.Exp(l - max)).ToArray();
        double total = exps.Sum();
        return exps.Select(e => e / total).ToArray();
    }

    private static bool SumsToOne(float[] probabilities) => Math.Abs(probabilities.Sum() - 1f) < 1e-5f;

    /// <summary>The kept tokens keep their relative odds: kept_i = softmax_i / sum over kept of softmax.</summary>
    private static bool ProportionalToSoftmax(float[] logits, float[] kept, int[] keptIndices)
    {
        var original = Softmax(logits);
        double keptMass = keptIndices.Sum(i => original[i]);
        return keptIndices.All(i => Math.Abs(kept[i] - original[i] / keptMass) < 1e-5);
    }

    private static void AssertClose(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-6f, $"[{i}] expected {expected[i]}, got {actual[i]}");
    }
}
