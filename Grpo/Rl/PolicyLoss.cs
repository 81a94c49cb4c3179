// The GRPO policy loss: the negative of DeepSeekMath's objective (section 4.1.1, equation 3), as a
// tensor op with a hand-written backward.
//
//   J_GRPO(theta) = E[q ~ P(Q), {o_i} ~ pi_theta_old(O|q)]
//     (1/G) sum_{i=1..G} (1/|o_i|) sum_{t=1..|o_i|} {
//        min( ratio_{i,t} * A_hat_{i,t},  clip(ratio_{i,t}, 1 - eps, 1 + eps) * A_hat_{i,t} )
//        - beta * D_KL[pi_theta || pi_ref] }                                               (eq. 3)
//   ratio_{i,t} = pi_theta(o_{i,t} | q, o_{i,<t}) / pi_theta_old(o_{i,t} | q, o_{i,<t}) = exp(logp - oldLogp)
//
// Per token: surrogate = min(ratio * A, clip(ratio, 1 - epsLow, 1 + epsHigh) * A),
//            term = -(surrogate - beta * k(logp, refLogp))       (k = k3 of eq. 4 by default)
// and the loss is a weighted sum of terms, loss = sum_{i,t} w_{i,t} * term_{i,t}, where the weights
// say how outputs of unequal lengths are averaged (padding has w = 0):
//   Sequence (the paper, eq. 3): w = 1 / (B * |o_i|)     mean over each output, then over outputs
//   Token    (DAPO, Yu et al. 2025): w = 1 / sum_i |o_i|  every token counts the same, so long
//            outputs are not diluted
//   Constant (Dr. GRPO, Liu et al. 2025): w = 1 / (B * MaxTokens)  a fixed budget: no length bias
// Backward (d term / d logp, the ratio's derivative in logp being the ratio itself):
//   d surrogate / d logp = ratio * A where the unclipped branch is the min, and 0 where the clipped
//   one is (ratio > 1 + epsHigh with A > 0, or ratio < 1 - epsLow with A < 0): a token already pushed
//   past the trust region in the direction of its advantage gets no more push.
//   d k / d logp from KlEstimators.Gradient.   d loss / d logp_{i,t} = w * (-dsurrogate + beta * dk).
// Departures from the paper: the paper has one eps; EpsilonLow != EpsilonHigh is DAPO's "clip higher"
// (DAPO uses 0.2 / 0.28 and beta = 0). B is all outputs in the batch (groups * G): with equal groups the
// paper's mean over G, then over questions, is the same number.
// Shapes: logProbs (B, T) from Op.TokenLogProbs; oldLogProbs, refLogProbs, advantages, mask (B * T).
// Tests: Grpo.Tests/Rl/PolicyLossTests.cs, and against Grpo.Tests/Reference/grpo_reference.py.
namespace Grpo.Rl;

public enum LossAggregation { Sequence, Token, Constant }

public sealed record PolicyLossOptions
{
    public float EpsilonLow { get; init; } = 0.2f;
    public float EpsilonHigh { get; init; } = 0.2f;
    /// <summary>KL coefficient (DeepSeekMath uses 0.04).</summary>
    public float Beta { get; init; } = 0.04f;
    public LossAggregation Aggregation { get; init; } = LossAggregation.Sequence;
    /// <summary>The generation budget that Constant aggregation divides by (per output).</summary>
    public int MaxTokens { get; init; }
    public KlEstimator Kl { get; init; } = KlEstimator.K3;

    public static LossAggregation ParseAggregation(string name) => name.ToLowerInvariant() switch
    {
        "sequence" => LossAggregation.Sequence,
        "token" => LossAggregation.Token,
        "constant" => LossAggregation.Constant,
        _ => throw new ArgumentException($"unknown aggregation '{name}' (expected sequence, token or constant)"),
    };
}

/// <summary>What the trainer logs: token means over completion tokens (KL, ratio) and clip fractions.</summary>
public sealed record PolicyLossStatistics(double MeanKl, double ClipFractionLow, double ClipFractionHigh, double MeanRatio, int Tokens);

/// <summary>Every per-token quantity of the loss, (B * T) each, 0 at padding: what `grpo explain loss` prints.</summary>
public sealed record PolicyLossTerms(float[] Ratio, float[] Surrogate, float[] Kl, float[] Term, float[] Weight, bool[] Clipped);

public sealed record PolicyLossResult(Tensor Loss, PolicyLossStatistics Statistics, PolicyLossTerms Terms);

public static class PolicyLoss
{
    public static PolicyLossResult Compute(Tensor logProbs, float[] oldLogProbs, float[]? refLogProbs,
        float[] advantages, float[] mask, PolicyLossOptions options)
    {
        Validate(logProbs, oldLogProbs, refLogProbs, advantages, mask, options);
        int batch = logProbs.Dim(0), tokens = logProbs.Dim(1), size = batch * tokens;
        var weights = AggregationWeights(mask, batch, tokens, options);

        var ratio = new float[size]; var surrogate = new float[size]; var kl = new float[size];
        var term = new float[size]; var clipped = new bool[size];
        var gradient = new double[size];   // d loss / d logp, kept for the backward
        double loss = 0, klSum = 0, ratioSum = 0;
        int tokenCount = 0, clippedLow = 0, clippedHigh = 0;
        for (int k = 0; k < size; k++)
        {
            if (mask[k] == 0) continue;
            double logp = logProbs.Data[k], advantage = advantages[k];
            double r = Math.Exp(logp - oldLogProbs[k]);
            double clippedRatio = Math.Clamp(r, 1 - options.EpsilonLow, 1 + options.EpsilonHigh);
            double unclippedObjective = r * advantage, clippedObjective = clippedRatio * advantage;
            // The clipped branch is the min only outside the interval, in the direction of A.
            bool isClipped = clippedObjective < unclippedObjective;
            double surrogateValue = isClipped ? clippedObjective : unclippedObjective;
            double dSurrogate = isClipped ? 0 : r * advantage;

            double klValue = 0, dKl = 0;
            if (refLogProbs != null)
            {
                klValue = KlEstimators.Value(options.Kl, logp, refLogProbs[k]);
                dKl = KlEstimators.Gradient(options.Kl, logp, refLogProbs[k]);
            }
            double termValue = -(surrogateValue - options.Beta * klValue);
            loss += weights[k] * termValue;
            gradient[k] = weights[k] * (-dSurrogate + options.Beta * dKl);

            ratio[k] = (float)r; surrogate[k] = (float)surrogateValue; kl[k] = (float)klValue;
            term[k] = (float)termValue; clipped[k] = isClipped;
            tokenCount++; ratioSum += r; klSum += klValue;
            // As TRL counts them: the clip is active on the low side for A < 0, the high side for A > 0.
            if (r < 1 - options.EpsilonLow && advantage < 0) clippedLow++;
            if (r > 1 + options.EpsilonHigh && advantage > 0) clippedHigh++;
        }

        var lossTensor = Tensor.Scalar((float)loss);
        Autograd.Record(lossTensor, [logProbs], () =>
        {
            float upstream = lossTensor.Grad![0];
            var grad = logProbs.GradOrCreate();
            for (int k = 0; k < size; k++) grad[k] += (float)(upstream * gradient[k]);
        });

        double perToken(double sum) => tokenCount == 0 ? 0 : sum / tokenCount;
        var statistics = new PolicyLossStatistics(perToken(klSum), perToken(clippedLow), perToken(clippedHigh),
            perToken(ratioSum), tokenCount);
        var weightsFloat = Array.ConvertAll(weights, w => (float)w);
        return new PolicyLossResult(lossTensor, statistics, new PolicyLossTerms(ratio, surrogate, kl, term, weightsFloat, clipped));
    }

    /// <summary>w_{i,t}: how much token t of output i counts in the loss (0 at padding). See the header.</summary>
    public static double[] AggregationWeights(float[] mask, int batch, int tokens, PolicyLossOptions options)
    {
        var weights = new double[batch * tokens];
        double totalTokens = 0;
        foreach (var m in mask) totalTokens += m;
        for (int b = 0; b < batch; b++)
        {
            double length = 0;
            for (int t = 0; t < tokens; t++) length += mask[b * tokens + t];
            // An empty output still counts in the paper's 1/G (it contributes 0), as TRL's clamp(min=1) does.
            double weight = options.Aggregation switch
            {
                LossAggregation.Sequence => length == 0 ? 0 : 1.0 / (batch * length),
                LossAggregation.Token => totalTokens == 0 ? 0 : 1.0 / totalTokens,
                LossAggregation.Constant => 1.0 / ((double)batch * options.MaxTokens),
                _ => throw new ArgumentException($"unknown aggregation {options.Aggregation}"),
            };
            for (int t = 0; t < tokens; t++) weights[b * tokens + t] = mask[b * tokens + t] * weight;
        }
        return weights;
    }

    private static void Validate(Tensor logProbs, float[] oldLogProbs, float[]? refLogProbs, float[] advantages,
        float[] mask, PolicyLossOptions options)
    {
        if (logProbs.Rank != 2)
            throw new ArgumentException($"logProbs must be (B, T), got shape [{string.Join(", ", logProbs.Shape)}]");
        int size = logProbs.Size;
        void SameSize(float[]? values, string name)
        {
            if (values != null && values.Length != size)
                throw new ArgumentException($"{name} has {values.Length} values but logProbs (B, T) = ({logProbs.Dim(0)}, {logProbs.Dim(1)}) has {size}");
        }
        SameSize(oldLogProbs, "oldLogProbs"); SameSize(refLogProbs, "refLogProbs");
        SameSize(advantages, "advantages"); SameSize(mask, "mask");
        if (refLogProbs == null && options.Beta != 0)
            throw new ArgumentException($"beta is {options.Beta} but no refLogProbs were given (give them, or set beta to 0)");
        if (!(options.EpsilonLow >= 0 && options.EpsilonLow < 1))
            throw new ArgumentException($"epsilon (low) must be in [0, 1), got {options.EpsilonLow}");
        if (!(options.EpsilonHigh >= 0) || !float.IsFinite(options.EpsilonHigh))
            throw new ArgumentException($"epsilonHigh must be a finite number >= 0, got {options.EpsilonHigh}");
        if (!(options.Beta >= 0) || !float.IsFinite(options.Beta))
            throw new ArgumentException($"beta must be a finite number >= 0, got {options.Beta}");
        int longest = 0;
        for (int b = 0; b < logProbs.Dim(0); b++)
        {
            int length = 0;
            for (int t = 0; t < logProbs.Dim(1); t++)
            {
                int k = b * logProbs.Dim(1) + t;
                if (mask[k] != 0 && mask[k] != 1) throw new ArgumentException($"mask[{k}] is {mask[k]}; a mask holds 1 (completion token) or 0 (padding)");
                if (mask[k] == 0) continue;
                length++;
                if (!float.IsFinite(logProbs.Data[k]) || !float.IsFinite(oldLogProbs[k]) || (refLogProbs != null && !float.IsFinite(refLogProbs[k])) || !float.IsFinite(advantages[k]))
                    throw new ArgumentException($"output {b} token {t}: log-probs and advantages of completion tokens must be finite");
            }
            longest = Math.Max(longest, length);
        }
        if (options.Aggregation == LossAggregation.Constant && options.MaxTokens < Math.Max(longest, 1))
            throw new ArgumentException($"constant aggregation needs maxTokens >= the longest completion ({longest} tokens), got {options.MaxTokens}");
    }
}
