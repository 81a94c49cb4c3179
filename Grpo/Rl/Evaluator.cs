// Held-out evaluation of a model on a task: greedy accuracy, and from n samples per problem at
// temperature 1, pass@k (unbiased estimator) and maj@k (majority vote) for each k (Rl/Evaluation.cs
// holds the formulas). The paper's Figure 7 is this table before and after RL: RL raises maj@K
// (it makes the right answer more probable) more than pass@K (it finds few answers the model could
// not already sample).
// Tests: Grpo.Tests/Rl/EvaluatorTests.cs.
using System.Diagnostics;
using Grpo.Model;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Rl;

public sealed record EvalResult(int Problems, int SamplesPerProblem, double Greedy,
    IReadOnlyDictionary<int, double> PassAtK, IReadOnlyDictionary<int, double> MajAtK, double Seconds)
{
    public double PassAt1 => PassAtK.TryGetValue(1, out var v) ? v : double.NaN;
}

public static class Evaluator
{
    /// <summary>Rows generated at once (prompts x samples); bounds the KV cache's memory.</summary>
    private const int RowsPerBatch = 512;

    public static EvalResult Run(Transformer model, IRlTask task, ITokenizer tokenizer, IReadOnlyList<Problem> problems,
        int samplesPerProblem, IReadOnlyList<int> ks, int maxNewTokens, Rng rng, Action<int, int>? progress = null)
    {
        if (ks.Any(k => k < 1 || k > samplesPerProblem))
            throw new ArgumentException($"every k must be in [1, {samplesPerProblem}] (the samples per problem), got [{string.Join(", ", ks)}]");
        var watch = Stopwatch.StartNew();
        int total = problems.Count * (samplesPerProblem + 1), done = 0;
        void Advance(int rows) { done += rows; progress?.Invoke(done, total); }

        var greedy = Complete(model, tokenizer, problems, 1, SamplerOptions.Greedy, maxNewTokens, rng, Advance)
            .Select((texts, i) => task.Reward(problems[i], texts[0]) >= 1.0).ToList();
        var sampled = Complete(model, tokenizer, problems, samplesPerProblem, new SamplerOptions(), maxNewTokens, rng, Advance);
        var correct = sampled.Select((texts, i) => (IReadOnlyList<bool>)texts.Select(t => task.Reward(problems[i], t) >= 1.0).ToList()).ToList();
        var answers = sampled.Select(texts => (IReadOnlyList<string?>)texts.Select(task.ExtractAnswer).ToList()).ToList();
        var references = problems.Select(p => p.Answer).ToList();
        var passAtK = ks.ToDictionary(k => k, k => Evaluation.PassAtK(correct, k));
        var majAtK = ks.ToDictionary(k => k, k => Evaluation.MajAtK(answers, references, k));
        return new EvalResult(problems.Count, samplesPerProblem, Evaluation.Accuracy(greedy), passAtK, majAtK, watch.Elapsed.TotalSeconds);
    }

    /// <summary>samples completions (decoded text) for every problem, in batches of about RowsPerBatch rows.</summary>
    public static List<string[]> Complete(Transformer model, ITokenizer tokenizer, IReadOnlyList<Problem> problems, int samples,
        SamplerOptions sampler, int maxNewTokens, Rng rng, Action<int>? advance = null)
    {
        var options = new GenerationOptions(maxNewTokens, sampler, tokenizer.Eos);
        int problemsPerBatch = Math.Max(1, RowsPerBatch / samples);
        var texts = new List<string[]>(problems.Count);
        for (int start = 0; start < problems.Count; start += problemsPerBatch)
        {
            var chunk = problems.Skip(start).Take(problemsPerBatch).ToArray();
            var prompts = chunk.Select(p => tokenizer.Encode(p.Prompt, addBos: true)).ToArray();
            var outputs = Generator.Generate(model, prompts, samples, options, rng);
            for (int i = 0; i < chunk.Length; i++)
                texts.Add(Enumerable.Range(0, samples).Select(s => tokenizer.Decode(outputs[i * samples + s].Tokens)).ToArray());
            advance?.Invoke(chunk.Length * samples);
        }
        return texts;
    }
}
