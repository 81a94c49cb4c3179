// Per-token estimators of KL(pi_theta || pi_ref), from log-probabilities of the sampled tokens.
//
// DeepSeekMath (section 4.1.1, equation 4) penalises the policy's distance from the reference model
// inside the GRPO objective, with Schulman's (2020) unbiased, always non-negative estimator:
//
//   D_KL[pi_theta || pi_ref] = pi_ref(o_t|q,o_<t) / pi_theta(o_t|q,o_<t)
//                              - log( pi_ref(o_t|q,o_<t) / pi_theta(o_t|q,o_<t) ) - 1       (eq. 4)
//
// With d = logp - refLogp = log(pi_theta / pi_ref) for the sampled token o_t ~ pi_theta:
//   k1 = d                      unbiased, can be negative, high variance      dk1/dlogp = 1
//   k2 = d^2 / 2                biased, non-negative, low variance            dk2/dlogp = d
//   k3 = e^-d + d - 1           the paper's: unbiased and non-negative        dk3/dlogp = 1 - e^-d
// k3 is unbiased because E_{o~pi}[pi_ref/pi] = 1, so E[k3] = E[-log(pi_ref/pi)] = KL(pi || pi_ref);
// it is non-negative because e^x >= 1 + x. Note that the estimator's gradient in logp is not the
// gradient of the true KL; the paper (and this code) simply differentiates the per-token k3.
// Hand-worked: logp = -1.0, refLogp = -1.5 -> d = 0.5, k1 = 0.5, k2 = 0.125,
//              k3 = e^-0.5 + 0.5 - 1 = 0.606531 - 0.5 = 0.106531.
// Tests: Grpo.Tests/Rl/KlEstimatorsTests.cs.
namespace Grpo.Rl;

public enum KlEstimator { K1, K2, K3 }

public static class KlEstimators
{
    /// <summary>k1 = log(pi / pi_ref).</summary>
    public static double K1(double logProb, double refLogProb) => logProb - refLogProb;

    /// <summary>k2 = (log(pi / pi_ref))^2 / 2.</summary>
    public static double K2(double logProb, double refLogProb)
    {
        double logRatio = logProb - refLogProb;
        return 0.5 * logRatio * logRatio;
    }

    /// <summary>k3 = pi_ref/pi - log(pi_ref/pi) - 1 (DeepSeekMath eq. 4).</summary>
    public static double K3(double logProb, double refLogProb)
    {
        double refOverPolicy = refLogProb - logProb;   // log(pi_ref / pi)
        // expm1 keeps k3 accurate (and exactly 0 at equality) when the two log-probs are close.
        return ExpM1(refOverPolicy) - refOverPolicy;
    }

    public static double Value(KlEstimator estimator, double logProb, double refLogProb) => estimator switch
    {
        KlEstimator.K1 => K1(logProb, refLogProb),
        KlEstimator.K2 => K2(logProb, refLogProb),
        KlEstimator.K3 => K3(logProb, refLogProb),
        _ => throw new ArgumentException($"unknown KL estimator {estimator}"),
    };

    /// <summary>d k / d logProb: what the KL penalty contributes to the policy-loss gradient (times beta).</summary>
    public static double Gradient(KlEstimator estimator, double logProb, double refLogProb) => estimator switch
    {
        KlEstimator.K1 => 1.0,
        KlEstimator.K2 => logProb - refLogProb,
        KlEstimator.K3 => -ExpM1(refLogProb - logProb),   // 1 - pi_ref/pi
        _ => throw new ArgumentException($"unknown KL estimator {estimator}"),
    };

    /// <summary>Parses "k1", "k2" or "k3" (any case); throws ArgumentException naming the bad value.</summary>
    public static KlEstimator Parse(string name) => name.ToLowerInvariant() switch
    {
        "k1" => KlEstimator.K1,
        "k2" => KlEstimator.K2,
        "k3" => KlEstimator.K3,
        _ => throw new ArgumentException($"unknown KL estimator '{name}' (expected k1, k2 or k3)"),
    };

    /// <summary>
    /// The estimator per token, as a tensor op: logProbs (any shape) and refLogProbs (same size) ->
    /// the same shape. Gradients flow to logProbs only (the reference model is frozen).
    /// </summary>
    public static Tensor PerToken(Tensor logProbs, float[] refLogProbs, KlEstimator estimator = KlEstimator.K3)
    {
        if (refLogProbs.Length != logProbs.Size)
            throw new ArgumentException($"refLogProbs has {refLogProbs.Length} values but logProbs has {logProbs.Size}");
        var kl = new Tensor(new float[logProbs.Size], logProbs.Shape);
        for (int i = 0; i < kl.Size; i++) kl.Data[i] = (float)Value(estimator, logProbs.Data[i], refLogProbs[i]);
        Autograd.Record(kl, [logProbs], () =>
        {
            var grad = logProbs.GradOrCreate();
            for (int i = 0; i < grad.Length; i++)
                grad[i] += kl.Grad![i] * (float)Gradient(estimator, logProbs.Data[i], refLogProbs[i]);
        });
        return kl;
    }

    // e^x - 1 without cancellation for small x (.NET has no Math.ExpM1): a short series near 0.
    private static double ExpM1(double x)
    {
        if (Math.Abs(x) > 1e-5) return Math.Exp(x) - 1.0;
        return x + x * x / 2.0 + x * x * x / 6.0;
    }
}
