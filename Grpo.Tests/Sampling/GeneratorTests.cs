// Tests of Sampling/Generator.cs on the Tiny model with random weights: the recorded log-probs are
// those of a full forward pass over the finished sequences; a left-padded batch computes what each
// prompt computes alone; EOS and stop sequences end a row; the same seed gives the same output.
using Grpo.Model;
using Grpo.Ops;
using Grpo.Sampling;

namespace Grpo.Tests.Sampling;

public class GeneratorTests
{
    // Lengths 4, 1 and 7: left padding of 3, 6 and 0 in the prompt block.
    private static readonly int[][] Prompts = [[1, 2, 3, 4], [5], [6, 7, 8, 9, 10, 11, 12]];

    private static Transformer TinyModel(ulong seed = 1) => new(TransformerConfig.Tiny, seed);

    [Theory]
    [InlineData(1f, 0, 1f)]
    [InlineData(0.7f, 5, 0.9f)]
    [InlineData(0f, 0, 1f)]
    public void RecordedLogProbsEqualAFullForwardPass(float temperature, int topK, float topP)
    {
        var model = TinyModel();
        var results = Generator.Generate(model, Prompts, 2, new GenerationOptions(8, new SamplerOptions(temperature, topK, topP)), new Rng(3));
        Assert.Equal(Prompts.Length * 2, results.Length);
        AssertLogProbsOfAFullForwardPass(model, results);
    }

    [Fact]
    public void RowsThatOutliveACompactionRecordTheLogProbsOfAFullForwardPass()
    {
        // Once half of the rows have ended, the generator moves the live ones into a smaller batch;
        // the rows decoded after that must still record what a full forward pass gives.
        var model = TinyModel(4);
        var sampler = new SamplerOptions(Temperature: 1.5f);
        // EOS: the token found in the most completions of a free run, so that many rows end early.
        var free = Generator.Generate(model, Prompts, 8, new GenerationOptions(16, sampler), new Rng(11));
        int eos = free.SelectMany(r => r.Tokens.Distinct()).GroupBy(t => t).MaxBy(g => g.Count())!.Key;
        var results = Generator.Generate(model, Prompts, 8, new GenerationOptions(16, sampler, EosToken: eos), new Rng(11));
        int longest = results.Max(r => r.NewTokens);
        Assert.True(results.Count(r => r.NewTokens < longest) > results.Length / 2, "no compaction happened: pick another EOS or seed");
        AssertLogProbsOfAFullForwardPass(model, results);
    }

    private static void AssertLogProbsOfAFullForwardPass(Transformer model, GenerationResult[] results)
    {
        foreach (var result in results)
        {
            var prompt = Prompts[result.PromptIndex];
            int[] sequence = [.. prompt, .. result.Tokens];
            // Position t predicts sequence[t + 1]; the last position has no target (0 stands in).
            int[] targets = [.. sequence[1..], 0];
            Tensor full;
            using (Autograd.NoGrad())
                full = Op.TokenLogProbs(model.Forward(sequence, 1, sequence.Length), targets); // (1, L)
            for (int i = 0; i < result.Tokens.Length; i++)
            {
                float expected = full.Data[prompt.Length - 1 + i];
                Assert.True(Math.Abs(expected - result.LogProbs[i]) < 1e-5f,
                    $"row {result.PromptIndex}/{result.SampleIndex} token {i}: full forward {expected}, generation {result.LogProbs[i]}");
            }
        }
    }

    [Fact]
    public void ALeftPaddedBatchEqualsEachPromptAlone()
    {
        var model = TinyModel(7);
        var options = new GenerationOptions(10, SamplerOptions.Greedy);
        var batched = Generator.Generate(model, Prompts, 3, options, new Rng(0));
        foreach (var result in batched)
        {
            var alone = Generator.Generate(model, [Prompts[result.PromptIndex]], 1, options, new Rng(0)).Single();
            Assert.Equal(alone.Tokens, result.Tokens);
            for (int i = 0; i < alone.LogProbs.Length; i++)
                Assert.True(Math.Abs(alone.LogProbs[i] - result.LogProbs[i]) < 1e-5f, $"token {i}: alone {alone.LogProbs[i]}, batched {result.LogProbs[i]}");
        }
    }

    [Fact]
    public void EosEndsARowAndIsKept()
    {
        var model = TinyModel(5);
        var free = Generator.Generate(model, Prompts, 1, new GenerationOptions(12, SamplerOptions.Greedy), new Rng(0));
        Assert.All(free, r => { Assert.True(r.Truncated); Assert.Equal(12, r.NewTokens); });
        // Call the third token of the first completion EOS: every row must now stop right after its first EOS.
        int eos = free[0].Tokens[2];
        var stopped = Generator.Generate(model, Prompts, 1, new GenerationOptions(12, SamplerOptions.Greedy, EosToken: eos), new Rng(0));
        for (int row = 0; row < free.Length; row++)
        {
            int firstEos = Array.IndexOf(free[row].Tokens, eos);
            if (firstEos < 0)
            {
                Assert.Equal(free[row].Tokens, stopped[row].Tokens);
                Assert.True(stopped[row].Truncated);
                continue;
            }
            Assert.Equal(free[row].Tokens[..(firstEos + 1)], stopped[row].Tokens);
            Assert.Equal(FinishReason.Eos, stopped[row].Finish);
            Assert.False(stopped[row].Truncated);
            Assert.Equal(firstEos + 1, stopped[row].NewTokens);
        }
        Assert.True(stopped[0].NewTokens <= 3);
    }

    [Fact]
    public void AStopSequenceEndsARow()
    {
        var model = TinyModel(5);
        var free = Generator.Generate(model, Prompts, 1, new GenerationOptions(12, SamplerOptions.Greedy), new Rng(0));
        int[] stop = free[2].Tokens[3..5];
        var stopped = Generator.Generate(model, Prompts, 1, new GenerationOptions(12, SamplerOptions.Greedy, StopSequences: [stop]), new Rng(0));
        Assert.Equal(FinishReason.StopSequence, stopped[2].Finish);
        Assert.True(stopped[2].NewTokens <= 5);
        Assert.Equal(stop, stopped[2].Tokens[^2..]);
        Assert.Equal(free[2].Tokens[..stopped[2].NewTokens], stopped[2].Tokens);
    }

    [Fact]
    public void TheSameSeedGivesTheSameOutput()
    {
        var model = TinyModel(2);
        var options = new GenerationOptions(10, new SamplerOptions(Temperature: 1.2f, TopP: 0.95f));
        var first = Generator.Generate(model, Prompts, 4, options, new Rng(11));
        var second = Generator.Generate(model, Prompts, 4, options, new Rng(11));
        for (int row = 0; row < first.Length; row++)
        {
            Assert.Equal(first[row].Tokens, second[row].Tokens);
            Assert.Equal(first[row].LogProbs, second[row].LogProbs);
        }
        // The G samples of one prompt are drawn independently: at temperature 1.2 over 10 tokens they differ.
        Assert.True(first.Where(r => r.PromptIndex == 0).Select(r => string.Join(",", r.Tokens)).Distinct().Count() > 1);
    }

    [Fact]
    public void BadInputIsRejected()
    {
        var model = TinyModel();
        var options = new GenerationOptions(4);
        Assert.Throws<ArgumentOutOfRangeException>(() => Generator.Generate(model, [[1, TransformerConfig.Tiny.VocabSize]], 1, options, new Rng(0)));
        Assert.Throws<ArgumentException>(() => Generator.Generate(model, [new int[TransformerConfig.Tiny.MaxSeqLen - 3]], 1, options, new Rng(0)));
        Assert.Throws<ArgumentException>(() => Generator.Generate(model, [Array.Empty<int>()], 1, options, new Rng(0)));
    }
}
