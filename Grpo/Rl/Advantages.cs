// Group-relative advantages: GRPO's replacement for PPO's value model (DeepSeekMath section 4.1.2-4.1.3).
//
// Outcome supervision (section 4.1.2): for each question, G outputs {o_1..o_G} get rewards
// r = {r_1..r_G}, and every token t of output i gets the same advantage
//
//   A_hat_{i,t} = r_tilde_i = (r_i - mean(r)) / std(r)
//
// The paper's worked example: rewards [0, 1, 0, 1] -> mean 0.5, population std 0.5 -> [-1, 1, -1, 1].
//
// Process supervision (section 4.1.3): output i has K_i reasoning steps; step j ends at token
// index(j) and gets reward r_i^index(j). All steps of the group are normalised together,
// r_tilde_i^index(j) = (r_i^index(j) - mean(R)) / std(R), and a token's advantage is the sum of the
// normalised rewards of the steps that end at or after it: A_hat_{i,t} = sum_{index(j) >= t} r_tilde_i^index(j).
//
// Where the options depart from the paper (the paper fixes none of them; its example uses the
// population std; the defaults reproduce it):
//   - Scale.Batch: the mean is still per group but the std is that of all rewards in the batch
//     (as TRL's scale_rewards="batch"), which stops a nearly constant group from being blown up.
//   - Scale.None (Dr. GRPO, Liu et al. 2025): A = r - mean(r); dividing by the std favours questions
//     that are too easy or too hard, a difficulty bias Dr. GRPO removes.
//   - StdKind.Sample divides by n - 1 (torch.std's default, so TRL's); Eps is added to the std
//     (TRL uses 1e-4); the default 0 is the paper's formula.
//   - A group whose std is 0 (every output got the same reward) has advantages 0: nothing to learn
//     from it, and 0/0 must not become NaN.
// Shapes: rewards (B) with B = groups * G, group-major (outputs of one question are adjacent).
// Tests: Grpo.Tests/Rl/AdvantagesTests.cs.
namespace Grpo.Rl;

public enum AdvantageScale { Group, Batch, None }

public enum StdKind { Population, Sample }

public sealed record AdvantageOptions(
    AdvantageScale Scale = AdvantageScale.Group,
    StdKind Std = StdKind.Population,
    double Eps = 0.0);

/// <summary>Advantages with the intermediate steps a reader wants to see (per group: mean and divisor).</summary>
public sealed record OutcomeAdvantages(float[] Advantages, double[] GroupMeans, double[] GroupStds, double[] Divisors);

public static class Advantages
{
    /// <summary>Outcome supervision: one advantage per output, rewards (groups * groupSize) group-major.</summary>
    public static float[] Outcome(float[] rewards, int groupSize, AdvantageOptions? options = null) =>
        OutcomeWithSteps(rewards, groupSize, options).Advantages;

    public static OutcomeAdvantages OutcomeWithSteps(float[] rewards, int groupSize, AdvantageOptions? options = null)
    {
        options ??= new AdvantageOptions();
        CheckGroups(rewards.Length, groupSize, "rewards");
        CheckFinite(rewards, "reward");
        CheckOptions(options);
        int groups = rewards.Length / groupSize;

        var means = new double[groups];
        var stds = new double[groups];
        for (int g = 0; g < groups; g++)
        {
            var group = rewards.AsSpan(g * groupSize, groupSize);
            (means[g], stds[g]) = MeanAndStd(group, options.Std);
        }
        var divisors = new double[groups];
        double batchStd = options.Scale == AdvantageScale.Batch ? MeanAndStd(rewards, options.Std).Std : 0;
        for (int g = 0; g < groups; g++)
            divisors[g] = options.Scale switch
            {
                AdvantageScale.Group => stds[g] + options.Eps,
                AdvantageScale.Batch => batchStd + options.Eps,
                _ => 1.0,
            };

        var advantages = new float[rewards.Length];
        for (int g = 0; g < groups; g++)
        {
            // A constant group carries no signal; its mean may differ from its rewards by rounding,
            // so it is zeroed explicitly rather than divided by a rounding-sized std.
            if (stds[g] == 0 || divisors[g] == 0) continue;
            for (int i = g * groupSize; i < (g + 1) * groupSize; i++)
                advantages[i] = (float)((rewards[i] - means[g]) / divisors[g]);
        }
        return new OutcomeAdvantages(advantages, means, stds, divisors);
    }

    /// <summary>
    /// Process supervision: stepRewards[i][j] is the reward of step j of output i, which ends at token
    /// stepEnds[i][j] (0-based, non-decreasing, below lengths[i]). Outputs are group-major, B =
    /// groups * groupSize. Returns each output's per-token advantages (lengths[i] values each).
    /// </summary>
    public static float[][] Process(float[][] stepRewards, int[][] stepEnds, int[] lengths, int groupSize, AdvantageOptions? options = null)
    {
        options ??= new AdvantageOptions();
        int outputs = stepRewards.Length;
        if (stepEnds.Length != outputs || lengths.Length != outputs)
            throw new ArgumentException($"process supervision needs one entry per output: {outputs} step-reward lists, {stepEnds.Length} step-end lists, {lengths.Length} lengths");
        CheckGroups(outputs, groupSize, "outputs");
        CheckOptions(options);
        for (int i = 0; i < outputs; i++)
        {
            if (stepEnds[i].Length != stepRewards[i].Length)
                throw new ArgumentException($"output {i} has {stepRewards[i].Length} step rewards but {stepEnds[i].Length} step ends");
            CheckFinite(stepRewards[i], $"step reward of output {i}");
            for (int j = 0; j < stepEnds[i].Length; j++)
            {
                if (stepEnds[i][j] < 0 || stepEnds[i][j] >= lengths[i])
                    throw new ArgumentException($"output {i} step {j} ends at token {stepEnds[i][j]}, outside its {lengths[i]} tokens");
                if (j > 0 && stepEnds[i][j] < stepEnds[i][j - 1])
                    throw new ArgumentException($"output {i} step ends must increase (or repeat, for two steps ending in one token), got {stepEnds[i][j - 1]} then {stepEnds[i][j]}");
            }
        }

        int groups = outputs / groupSize;
        float[] GroupSteps(int g) => stepRewards.Skip(g * groupSize).Take(groupSize).SelectMany(s => s).ToArray();
        double batchStd = options.Scale == AdvantageScale.Batch ? MeanAndStd(stepRewards.SelectMany(s => s).ToArray(), options.Std).Std : 0;

        var tokenAdvantages = new float[outputs][];
        for (int g = 0; g < groups; g++)
        {
            var steps = GroupSteps(g);   // R: every step reward of the group's G outputs
            var (mean, std) = steps.Length == 0 ? (0, 0) : MeanAndStd(steps, options.Std);
            double divisor = options.Scale switch
            {
                AdvantageScale.Group => std + options.Eps,
                AdvantageScale.Batch => batchStd + options.Eps,
                _ => 1.0,
            };
            bool noSignal = std == 0 || divisor == 0;
            for (int i = g * groupSize; i < (g + 1) * groupSize; i++)
            {
                var perToken = new float[lengths[i]];
                // Walk tokens from the end, adding each step's normalised reward once its end is reached:
                // token t collects every step j with index(j) >= t.
                double suffixSum = 0;
                int step = stepEnds[i].Length - 1;
                for (int t = lengths[i] - 1; t >= 0; t--)
                {
                    while (step >= 0 && stepEnds[i][step] >= t)
                    {
                        if (!noSignal) suffixSum += (stepRewards[i][step] - mean) / divisor;
                        step--;
                    }
                    perToken[t] = (float)suffixSum;
                }
                tokenAdvantages[i] = perToken;
            }
        }
        return tokenAdvantages;
    }

    /// <summary>
    /// Spreads one advantage per output over its tokens: (B) -> (B * T), the layout PolicyLoss reads
    /// (outcome supervision gives every token of an output the same advantage).
    /// </summary>
    public static float[] PerToken(float[] perOutput, int tokensPerOutput)
    {
        var perToken = new float[perOutput.Length * tokensPerOutput];
        for (int b = 0; b < perOutput.Length; b++)
            perToken.AsSpan(b * tokensPerOutput, tokensPerOutput).Fill(perOutput[b]);
        return perToken;
    }

    /// <summary>Ragged per-token advantages (as Process returns) padded with zeros to (B * T).</summary>
    public static float[] PerToken(float[][] perOutputTokens, int tokensPerOutput)
    {
        var perToken = new float[perOutputTokens.Length * tokensPerOutput];
        for (int b = 0; b < perOutputTokens.Length; b++)
        {
            if (perOutputTokens[b].Length > tokensPerOutput)
                throw new ArgumentException($"output {b} has {perOutputTokens[b].Length} tokens, more than {tokensPerOutput}");
            perOutputTokens[b].CopyTo(perToken.AsSpan(b * tokensPerOutput));
        }
        return perToken;
    }

    /// <summary>Mean and standard deviation in float64; the std is exactly 0 when all values are equal.</summary>
    public static (double Mean, double Std) MeanAndStd(ReadOnlySpan<float> values, StdKind kind)
    {
        double sum = 0;
        foreach (var v in values) sum += v;
        double mean = sum / values.Length;
        bool constant = true;
        foreach (var v in values) constant &= v == values[0];
        if (constant) return (values[0], 0);
        double squares = 0;
        foreach (var v in values) squares += (v - mean) * (v - mean);
        int dof = kind == StdKind.Sample ? values.Length - 1 : values.Length;
        return (mean, Math.Sqrt(squares / dof));
    }

    public static AdvantageScale ParseScale(string name) => name.ToLowerInvariant() switch
    {
        "group" => AdvantageScale.Group,
        "batch" => AdvantageScale.Batch,
        "none" => AdvantageScale.None,
        _ => throw new ArgumentException($"unknown advantage scale '{name}' (expected group, batch or none)"),
    };

    public static StdKind ParseStd(string name) => name.ToLowerInvariant() switch
    {
        "population" => StdKind.Population,
        "sample" => StdKind.Sample,
        _ => throw new ArgumentException($"unknown std '{name}' (expected population or sample)"),
    };

    private static void CheckGroups(int count, int groupSize, string what)
    {
        if (groupSize < 2)
            throw new ArgumentException($"group size must be at least 2 (a group of one output has nothing to be relative to), got {groupSize}");
        if (count == 0) throw new ArgumentException($"no {what}");
        if (count % groupSize != 0)
            throw new ArgumentException($"{count} {what} do not split into whole groups of {groupSize}");
    }

    private static void CheckFinite(float[] values, string what)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) throw new ArgumentException($"{what} {i} is {values[i]}, not a finite number");
    }

    private static void CheckOptions(AdvantageOptions options)
    {
        if (!double.IsFinite(options.Eps) || options.Eps < 0)
            throw new ArgumentException($"eps must be a finite number >= 0, got {options.Eps}");
    }
}
