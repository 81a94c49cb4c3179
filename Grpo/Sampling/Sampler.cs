// Sampler: picks the next token from one row of logits (V), as llama2.c's run.c does, each rule a
// few lines over a span.
//
//   greedy (temperature 0):  argmax_i logits_i, ties to the lowest index
//   temperature T:           p_i = exp(logits_i / T) / sum_j exp(logits_j / T)
//   top-k (k > 0):           keep the k most probable tokens (ties to the lowest index), renormalise
//   top-p (p < 1, nucleus):  keep the smallest set of most probable tokens whose mass reaches p, renormalise
//   min-p (m > 0):           drop tokens with p_i < m * max_j p_j, renormalise
//
// The filters run in that order (temperature, top-k, top-p, min-p), as Hugging Face's generate
// applies them. The draw is the inverse CDF of the kept probabilities at one uniform number from
// our Rng, so the same seed gives the same tokens.
// What GRPO records as a token's log-prob is not this distribution: see LogProbability below.
// Tests: Grpo.Tests/Sampling/SamplerTests.cs.
using System.Numerics.Tensors;

namespace Grpo.Sampling;

/// <summary>How to draw: Temperature 0 is greedy; TopK 0, TopP 1 and MinP 0 switch a filter off.</summary>
public sealed record SamplerOptions(float Temperature = 1f, int TopK = 0, float TopP = 1f, float MinP = 0f)
{
    public static SamplerOptions Greedy { get; } = new(Temperature: 0f);

    public bool IsGreedy => Temperature <= 0f;

    /// <summary>Throws on values that have no meaning (negative temperature, p outside [0, 1], ...).</summary>
    public void Validate()
    {
        if (!(Temperature >= 0f) || float.IsInfinity(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), $"temperature must be >= 0, got {Temperature}");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), $"top-k must be >= 0 (0 = off), got {TopK}");
        if (!(TopP > 0f && TopP <= 1f)) throw new ArgumentOutOfRangeException(nameof(TopP), $"top-p must be in (0, 1] (1 = off), got {TopP}");
        if (!(MinP >= 0f && MinP <= 1f)) throw new ArgumentOutOfRangeException(nameof(MinP), $"min-p must be in [0, 1] (0 = off), got {MinP}");
    }
}

public static class Sampler
{
    /// <summary>One token drawn from logits (V) under options. Allocates scratch; the Generator uses the overload below.</summary>
    public static int Sample(ReadOnlySpan<float> logits, SamplerOptions options, Rng rng) =>
        Sample(logits, options, rng, new float[logits.Length], new ulong[logits.Length]);

    /// <summary>As above with caller-owned scratch: probabilities (V) and order (V), so a decode loop allocates nothing.</summary>
    public static int Sample(ReadOnlySpan<float> logits, SamplerOptions options, Rng rng, Span<float> probabilities, Span<ulong> order)
    {
        if (options.IsGreedy) return ArgMax(logits);
        ProbabilitiesAfterFilters(logits, options, probabilities, order);
        return Draw(probabilities, rng.NextFloat());
    }

    /// <summary>The distribution Sample draws from (V, sums to 1); at temperature 0, one-hot on the argmax.</summary>
    public static float[] ProbabilitiesAfterFilters(ReadOnlySpan<float> logits, SamplerOptions options)
    {
        var probabilities = new float[logits.Length];
        ProbabilitiesAfterFilters(logits, options, probabilities, new ulong[logits.Length]);
        return probabilities;
    }

    public static void ProbabilitiesAfterFilters(ReadOnlySpan<float> logits, SamplerOptions options, Span<float> probabilities, Span<ulong> order)
    {
        if (options.IsGreedy)
        {
            probabilities.Clear();
            probabilities[ArgMax(logits)] = 1f;
            return;
        }
        Softmax(logits, options.Temperature, probabilities);
        bool sorted = false;
        if (options.TopK > 0 && options.TopK < logits.Length)
        {
            SortByProbabilityDescending(probabilities, order);
            sorted = true;
            KeepTopK(probabilities, order, options.TopK);
        }
        if (options.TopP < 1f)
        {
            if (!sorted) SortByProbabilityDescending(probabilities, order);
            KeepTopP(probabilities, order, options.TopP);
        }
        if (options.MinP > 0f) KeepMinP(probabilities, options.MinP);
    }

    /// <summary>Index of the largest logit; the lowest index among equals.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }

    /// <summary>probabilities = softmax(logits / temperature), shifted by the max so exp never overflows.</summary>
    public static void Softmax(ReadOnlySpan<float> logits, float temperature, Span<float> probabilities)
    {
        float max = TensorPrimitives.Max(logits);
        float inverseTemperature = 1f / temperature;
        for (int i = 0; i < logits.Length; i++) probabilities[i] = MathF.Exp((logits[i] - max) * inverseTemperature);
        Normalise(probabilities);
    }

    /// <summary>
    /// Writes into order (V) the token indices from most to least probable, ties to the lowest index.
    /// Each entry packs (probability, index) into one ulong so a plain ascending sort does it, with no
    /// comparer delegate: a non-negative float's bits grow with its value, so ~bits in the high half
    /// sorts descending, and the index in the low half breaks ties upward. The index is (int)order[r].
    /// </summary>
    public static void SortByProbabilityDescending(ReadOnlySpan<float> probabilities, Span<ulong> order)
    {
        for (int i = 0; i < probabilities.Length; i++)
        {
            uint bits = BitConverter.SingleToUInt32Bits(probabilities[i]);
            order[i] = (ulong)~bits << 32 | (uint)i;
        }
        order[..probabilities.Length].Sort();
    }

    /// <summary>Zeroes all but the k most probable tokens (order from SortByProbabilityDescending), then renormalises.</summary>
    public static void KeepTopK(Span<float> probabilities, ReadOnlySpan<ulong> order, int k)
    {
        for (int rank = k; rank < probabilities.Length; rank++) probabilities[(int)order[rank]] = 0f;
        Normalise(probabilities);
    }

    /// <summary>Keeps the smallest prefix of the sorted tokens whose mass reaches p, then renormalises.</summary>
    public static void KeepTopP(Span<float> probabilities, ReadOnlySpan<ulong> order, float p)
    {
        double mass = 0;
        int rank = 0;
        while (rank < probabilities.Length && mass < p) mass += probabilities[(int)order[rank++]];
        for (; rank < probabilities.Length; rank++) probabilities[(int)order[rank]] = 0f;
        Normalise(probabilities);
    }

    /// <summary>Zeroes tokens whose probability is below minP times the largest, then renormalises.</summary>
    public static void KeepMinP(Span<float> probabilities, float minP)
    {
        float threshold = minP * TensorPrimitives.Max(probabilities);
        for (int i = 0; i < probabilities.Length; i++)
            if (probabilities[i] < threshold) probabilities[i] = 0f;
        Normalise(probabilities);
    }

    /// <summary>Inverse CDF: the first token whose cumulative probability exceeds coin (in [0, 1)).</summary>
    public static int Draw(ReadOnlySpan<float> probabilities, float coin)
    {
        float cumulative = 0f;
        int lastPossible = 0;
        for (int i = 0; i < probabilities.Length; i++)
        {
            if (probabilities[i] <= 0f) continue;
            cumulative += probabilities[i];
            lastPossible = i;
            if (coin < cumulative) return i;
        }
        return lastPossible; // coin fell past the end by rounding: the last token that could be drawn
    }

    /// <summary>
    /// log softmax(logits)[token] at temperature 1: the log-prob GRPO records for a sampled token as the
    /// old policy's. Temperature, top-k, top-p and min-p change which token is drawn, never this value,
    /// so it equals what Op.TokenLogProbs computes on the same logits during training.
    /// </summary>
    public static float LogProbability(ReadOnlySpan<float> logits, int token)
    {
        float max = TensorPrimitives.Max(logits);
        double sum = 0;
        for (int i = 0; i < logits.Length; i++) sum += MathF.Exp(logits[i] - max);
        return (float)(logits[token] - max - Math.Log(sum));
    }

    private static void Normalise(Span<float> probabilities)
    {
        float total = TensorPrimitives.Sum(probabilities);
        TensorPrimitives.Multiply(probabilities, 1f / total, probabilities);
    }
}
