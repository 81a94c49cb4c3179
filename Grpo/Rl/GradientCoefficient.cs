// DeepSeekMath's unified paradigm (section 5.2.1, equation 5): SFT, RFT, Online RFT, PPO and GRPO
// all take the same gradient step, and differ only in where the data comes from and in the
// gradient coefficient GC that weights each token:
//
//   grad J_A(theta) = E[(q, o) ~ D] ( (1/|o|) sum_t GC_A(q, o, t, pi_rf) * grad log pi_theta(o_t | q, o_<t) )   (eq. 5)
//
//   method       data source D                          gradient coefficient GC
//   SFT          q, o ~ P_sft (human-written answers)   1
//   RFT          q ~ P_sft, o ~ pi_sft (offline)        I(o): 1 if the answer is correct, else 0
//   Online RFT   q ~ P_sft, o ~ pi_theta (online)       I(o)
//   GRPO         q ~ P_sft, o ~ pi_theta (online)       A_hat_{i,t} + beta * (pi_ref / pi_theta - 1)
// (PPO's GC is its GAE advantage, which needs a value model; this project has none.)
//
// This file is that equation as a loss: loss = -(1/B) sum_i (1/|o_i|) sum_t GC_{i,t} * logp_{i,t}
// with GC held constant, so d loss / d logp_{i,t} = -GC_{i,t} / (B |o_i|), and one gradient-descent
// step on it is one step of eq. 5. GRPO's coefficient is the gradient of PolicyLoss's objective in
// the on-policy case (ratio = 1, nothing clipped): beta * (pi_ref/pi - 1) is -beta * dk3/dlogp. With
// several updates per batch (mu > 1) the ratio and clip matter, and the trainer uses PolicyLoss.
// Departure from the paper: I(o) is read from the outcome reward as reward > 0 (rule rewards are 1 or 0).
// Shapes: logProbs (B, T); coefficients and mask (B * T). Tests: Grpo.Tests/Rl/GradientCoefficientTests.cs.
namespace Grpo.Rl;

public enum TrainingMethod { Sft, Rft, OnlineRft, Grpo }

public enum DataSource
{
    /// <summary>Questions and answers from the supervised data set.</summary>
    SupervisedData,
    /// <summary>Outputs sampled once, before training, from the SFT model.</summary>
    SftModelSamples,
    /// <summary>Outputs sampled from the current policy during training.</summary>
    PolicySamples,
}

public static class GradientCoefficient
{
    public static DataSource SourceOf(TrainingMethod method) => method switch
    {
        TrainingMethod.Sft => DataSource.SupervisedData,
        TrainingMethod.Rft => DataSource.SftModelSamples,
        TrainingMethod.OnlineRft or TrainingMethod.Grpo => DataSource.PolicySamples,
        _ => throw new ArgumentException($"unknown training method {method}"),
    };

    /// <summary>
    /// GC_{i,t} for every token (B * T), 0 at padding. outcomeRewards (B) are read by RFT and Online RFT;
    /// advantages (B * T), logProbs and refLogProbs (B * T) and beta by GRPO. Unused arguments may be null.
    /// </summary>
    public static float[] Coefficients(TrainingMethod method, float[] mask, int tokensPerOutput,
        float[]? outcomeRewards = null, float[]? advantages = null, float[]? logProbs = null,
        float[]? refLogProbs = null, float beta = 0f)
    {
        if (tokensPerOutput <= 0 || mask.Length % tokensPerOutput != 0)
            throw new ArgumentException($"mask has {mask.Length} values, not a whole number of outputs of {tokensPerOutput} tokens");
        int batch = mask.Length / tokensPerOutput;
        var coefficients = new float[mask.Length];
        for (int k = 0; k < mask.Length; k++)
        {
            if (mask[k] == 0) continue;
            int output = k / tokensPerOutput;
            coefficients[k] = method switch
            {
                TrainingMethod.Sft => 1f,
                TrainingMethod.Rft or TrainingMethod.OnlineRft => Need(outcomeRewards, "outcomeRewards", batch)[output] > 0 ? 1f : 0f,
                TrainingMethod.Grpo => (float)(Need(advantages, "advantages", mask.Length)[k]
                    + beta * (Math.Exp(Need(refLogProbs, "refLogProbs", mask.Length)[k] - Need(logProbs, "logProbs", mask.Length)[k]) - 1)),
                _ => throw new ArgumentException($"unknown training method {method}"),
            };
        }
        return coefficients;
    }

    /// <summary>
    /// The unified loss -(1/B) sum_i (1/|o_i|) sum_t GC_{i,t} * logp_{i,t}, whose gradient is eq. 5
    /// (negated, since it is minimised). Outputs with no tokens add 0 but still count in B.
    /// </summary>
    public static Tensor Loss(Tensor logProbs, float[] coefficients, float[] mask)
    {
        if (logProbs.Rank != 2) throw new ArgumentException($"logProbs must be (B, T), got shape [{string.Join(", ", logProbs.Shape)}]");
        if (coefficients.Length != logProbs.Size || mask.Length != logProbs.Size)
            throw new ArgumentException($"coefficients ({coefficients.Length}) and mask ({mask.Length}) must each have B * T = {logProbs.Size} values");
        var weights = PolicyLoss.AggregationWeights(mask, logProbs.Dim(0), logProbs.Dim(1), new PolicyLossOptions());
        double loss = 0;
        for (int k = 0; k < weights.Length; k++)
            if (weights[k] != 0) loss -= weights[k] * coefficients[k] * logProbs.Data[k];
        var result = Tensor.Scalar((float)loss);
        Autograd.Record(result, [logProbs], () =>
        {
            float upstream = result.Grad![0];
            var grad = logProbs.GradOrCreate();
            for (int k = 0; k < weights.Length; k++) grad[k] -= (float)(upstream * weights[k] * coefficients[k]);
        });
        return result;
    }

    public static TrainingMethod Parse(string name) => name.ToLowerInvariant().Replace("-", "").Replace("_", "") switch
    {
        "sft" => TrainingMethod.Sft,
        "rft" => TrainingMethod.Rft,
        "onlinerft" => TrainingMethod.OnlineRft,
        "grpo" => TrainingMethod.Grpo,
        _ => throw new ArgumentException($"unknown training method '{name}' (expected sft, rft, online-rft or grpo)"),
    };

    private static float[] Need(float[]? values, string name, int length)
    {
        if (values == null) throw new ArgumentException($"{name} are needed for this training method");
        if (values.Length != length) throw new ArgumentException($"{name} has {values.Length} values, expected {length}");
        return values;
    }
}
