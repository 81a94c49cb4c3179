// Tests of Rl/KlEstimators.cs: the hand-worked token, the gradients against finite
// differences, k3's two laws (never negative, 0 exactly at equality), and that k3 averaged over
// tokens sampled from pi estimates KL(pi || pi_ref) without bias.
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Rl;
using Grpo.Sampling;

namespace Grpo.Tests.Rl;

public class KlEstimatorsTests
{
    [Fact]
    public void ByHand()
    {
        // logp = -1.0, ref = -1.5: d = 0.5; k1 = 0.5; k2 = 0.25 / 2 = 0.125;
        // k3 = e^-0.5 + 0.5 - 1 = 0.6065307 - 0.5 = 0.106531; dk3/dlogp = 1 - e^-0.5 = 0.393469.
        Assert.Equal(0.5, KlEstimators.K1(-1.0, -1.5), 12);
        Assert.Equal(0.125, KlEstimators.K2(-1.0, -1.5), 12);
        Assert.Equal(0.106531, KlEstimators.K3(-1.0, -1.5), 6);
        Assert.Equal(1.0, KlEstimators.Gradient(KlEstimator.K1, -1.0, -1.5), 12);
        Assert.Equal(0.5, KlEstimators.Gradient(KlEstimator.K2, -1.0, -1.5), 12);
        Assert.Equal(0.393469, KlEstimators.Gradient(KlEstimator.K3, -1.0, -1.5), 6);
    }

    [Property(MaxTest = 100)]
    public void GradientsMatchFiniteDifferences(int seed)
    {
        var rng = new Rng((ulong)seed);
        double logp = -5 * rng.NextDouble(), reference = -5 * rng.NextDouble(), h = 1e-6;
        foreach (var estimator in Enum.GetValues<KlEstimator>())
        {
            double numeric = (KlEstimators.Value(estimator, logp + h, reference) - KlEstimators.Value(estimator, logp - h, reference)) / (2 * h);
            double analytic = KlEstimators.Gradient(estimator, logp, reference);
            Assert.True(Math.Abs(numeric - analytic) < 1e-6 * Math.Max(1, Math.Abs(analytic)), $"{estimator} at ({logp}, {reference}): {analytic} vs {numeric}");
        }
    }

    [Property(MaxTest = 300)]
    public bool K3IsNeverNegativeAndZeroExactlyAtEquality(int seed)
    {
        var rng = new Rng((ulong)seed);
        float logp = -20 * rng.NextFloat();
        float reference = rng.NextInt(4) switch
        {
            0 => logp,                          // equal
            1 => MathF.BitDecrement(logp),      // one float step away
            2 => logp + (rng.NextFloat() - 0.5f) * 1e-3f,
            _ => -20 * rng.NextFloat(),
        };
        double k3 = KlEstimators.K3(logp, reference);
        return k3 >= 0 && (k3 == 0) == (logp == reference);
    }

    [Property(MaxTest = 10)]
    public void K3AveragedOverSamplesFromPiIsKl(int seed)
    {
        // A 4-way categorical pi and pi_ref; tokens x ~ pi; mean of k3(log pi(x), log pi_ref(x)) over N
        // samples -> KL(pi || pi_ref) = sum_x pi(x) log(pi(x) / pi_ref(x)), within 5 standard errors.
        var rng = new Rng((ulong)seed);
        double[] Distribution()
        {
            var weights = Enumerable.Range(0, 4).Select(_ => Math.Exp(rng.NextGaussian())).ToArray();
            return weights.Select(w => w / weights.Sum()).ToArray();
        }
        var pi = Distribution();
        var piRef = Distribution();
        double kl = Enumerable.Range(0, 4).Sum(x => pi[x] * Math.Log(pi[x] / piRef[x]));

        const int samples = 20000;
        double sum = 0, squares = 0;
        for (int n = 0; n < samples; n++)
        {
            double u = rng.NextDouble();
            int x = 0;
            while (x < 3 && u >= pi[x]) { u -= pi[x]; x++; }
            double k3 = KlEstimators.K3(Math.Log(pi[x]), Math.Log(piRef[x]));
            sum += k3; squares += k3 * k3;
        }
        double mean = sum / samples;
        double standardError = Math.Sqrt(Math.Max(squares / samples - mean * mean, 0) / samples);
        Assert.True(Math.Abs(mean - kl) <= 5 * standardError + 1e-6, $"mean k3 {mean} vs KL {kl} (standard error {standardError})");
    }

    [Property(MaxTest = 20)]
    public void PerTokenTensorGradients(int seed)
    {
        var rng = new Random(seed);
        var logProbs = GradCheck.Random(rng, 2, 2, 3);
        var reference = Enumerable.Range(0, 6).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        foreach (var estimator in Enum.GetValues<KlEstimator>())
            GradCheck.AssertOk(GradCheck.Check(x => KlEstimators.PerToken(x[0], reference, estimator), [logProbs], seed, h: 1e-3));
    }

    [Fact]
    public void UnknownEstimatorIsNamed()
    {
        Assert.Contains("unknown KL estimator 'k4'", Assert.Throws<ArgumentException>(() => KlEstimators.Parse("k4")).Message);
    }
}
