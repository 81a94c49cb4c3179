// Generator: batched autoregressive sampling of G completions for each of many prompts, with the
// KV cache. This is GRPO's hot loop: the "sample G outputs from the old policy" line of DeepSeekMath's
// Algorithm 1, which also records each chosen token's log-prob under that policy.
//
// Rows: output r = promptIndex * G + sampleIndex, so a prompt's G samples sit together (a group).
// Left padding: prompts of different lengths are right-aligned in a (R, Tmax) block, pads first.
//   keyMask is false at pads, and rope positions count from each row's first real token, so a
//   padded row computes exactly what it computes alone (no key of it ever sees a pad; a pad's own
//   query has no allowed key and outputs zeros). Right alignment puts every row's last prompt token
//   in the same column, so all rows then decode in lock step, one column per step.
// Steps: one Forward over the block of distinct prompts fills a cache (prefill); each prompt's cache
//   row and last logits are then copied to its G sample rows (KvCache.Gather), since G identical
//   prefills would compute the same thing G times (the prefill was about 40% of sampling time at
//   G = 16). Then each step samples one token for every live row from its last logits and runs one
//   Forward of (R', 1) over the rows still in the cache. A finished row stays in the batch (its new
//   key masked) until half the batch has finished; then the cache gathers the live rows into a batch
//   of their size (completion lengths vary, 10 to 48 tokens in the demo, so the tail of a batch was
//   mostly finished rows). Halving bounds the copying to about one cache's worth in all.
// Stops: a row ends at the EOS token, at one of the stop token sequences (both kept in the
//   completion, so the policy learns to stop), or after MaxNewTokens (then Truncated = true).
// Log-probs: LogProbs[i] = log softmax(logits)[token_i] at temperature 1, the policy's own
//   probability: GRPO's old-policy log-probs, equal to what Op.TokenLogProbs gives on a full forward
//   pass over the finished sequence. Temperature, top-k, top-p and min-p change only which token is
//   drawn (the behaviour distribution), not the recorded log-prob. (With temperature != 1 the
//   samples come from a different distribution than the one whose log-probs are recorded, as in TRL
//   and verl when they re-score without temperature; DeepSeekMath samples the policy itself.)
// Device: the model may live on a GPU; then the forward passes and the cache run there, and so does
//   the draw (SampleOnDevice: the sampler's kernels, with the coins drawn from the host's Rng in the
//   host loop's order, so a seed gives the same tokens on every device up to the logits' rounding);
//   top-k and top-p, which the kernels lack, bring each step's logits (R, V) to the host instead.
// Tests: Grpo.Tests/Sampling/GeneratorTests.cs, Grpo.Tests/Compute/DeviceTensorTests.cs.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Model;

namespace Grpo.Sampling;

/// <summary>How to generate: at most MaxNewTokens each; stop at EosToken (null = none) or at any of StopSequences.</summary>
public sealed record GenerationOptions(int MaxNewTokens, SamplerOptions Sampler, int? EosToken = null, IReadOnlyList<int[]>? StopSequences = null)
{
    public GenerationOptions(int maxNewTokens) : this(maxNewTokens, new SamplerOptions()) { }
}

public enum FinishReason { Eos, StopSequence, MaxNewTokens }

/// <summary>One completion: its tokens (EOS or stop sequence included), each token's temperature-1 log-prob, and why it ended.</summary>
public sealed record GenerationResult(int PromptIndex, int SampleIndex, int[] Tokens, float[] LogProbs, FinishReason Finish)
{
    /// <summary>Hit MaxNewTokens without EOS or a stop sequence.</summary>
    public bool Truncated => Finish == FinishReason.MaxNewTokens;
    public int NewTokens => Tokens.Length;
}

public static class Generator
{
    /// <summary>samplesPerPrompt completions for every prompt; result r is prompt r / G, sample r % G.</summary>
    public static GenerationResult[] Generate(Transformer model, IReadOnlyList<int[]> prompts, int samplesPerPrompt,
        GenerationOptions options, Rng rng)
    {
        var config = model.Config;
        Validate(config, prompts, samplesPerPrompt, options);
        int rows = prompts.Count * samplesPerPrompt, vocab = config.VocabSize, maxNew = options.MaxNewTokens;
        int promptWidth = prompts.Max(p => p.Length);

        using var noGrad = Autograd.NoGrad();

        // Prefill: the distinct prompts (P rows), right-aligned (left padding).
        int promptCount = prompts.Count;
        var blockTokens = new int[promptCount * promptWidth];
        var blockMask = new bool[promptCount * promptWidth];
        var blockPositions = new int[promptCount * promptWidth];
        for (int p = 0; p < promptCount; p++)
        {
            var prompt = prompts[p];
            int pad = promptWidth - prompt.Length;
            for (int t = 0; t < promptWidth; t++)
            {
                int i = p * promptWidth + t;
                bool real = t >= pad;
                blockTokens[i] = real ? prompt[t - pad] : 0;
                blockMask[i] = real;
                blockPositions[i] = real ? t - pad : 0;
            }
        }
        var promptCache = new KvCache(config, promptCount, promptWidth + maxNew, model.Device);

        // Each row's next-token logits (R, V) live on the host, where the sampler's loop draws (the
        // reference); with the model on a GPU and a filter the sampler kernels have (greedy,
        // temperature, min-p), they stay on the device and only the drawn tokens and their log-probs
        // come back each step (SampleOnDevice), not R x V logits.
        bool sampleOnDevice = !model.Device.IsCpu && options.Sampler.TopK == 0 && options.Sampler.TopP >= 1f;
        float[] logits = [];
        Tensor? deviceLogits = null;

        // Row r starts as a copy of its prompt's row: the cache, and the logits of the last prompt column.
        var promptOfRow = Enumerable.Range(0, rows).Select(row => row / samplesPerPrompt).ToArray();
        var lastColumn = promptOfRow.Select(p => p * promptWidth + promptWidth - 1).ToArray();
        using (DeviceArray.Scope())   // on a GPU, the forward's intermediate tensors go back to the pool here
        {
            var prefill = model.Forward(blockTokens, promptCount, promptWidth, promptCache, blockMask, blockPositions); // (P, Tmax, V)
            if (sampleOnDevice) deviceLogits = KeepRows(prefill, lastColumn, vocab);
            else
            {
                var prefillValues = HostValues(prefill);
                logits = new float[rows * vocab];
                for (int row = 0; row < rows; row++)
                    prefillValues.AsSpan(lastColumn[row] * vocab, vocab).CopyTo(logits.AsSpan(row * vocab));
            }
        }
        var cache = promptCache.Gather(promptOfRow);
        promptCache.Release();
        var promptLengths = promptOfRow.Select(p => prompts[p].Length).ToArray();

        // Decode: one token per live row per step. Completions live in flat (R, maxNew) arrays.
        // Cache row (slot) s decodes output row slotRows[s]; slots stay in row order, so the rng
        // draws for the rows in the same order whether or not the batch has been compacted.
        var completions = new int[rows * maxNew];
        var logProbs = new float[rows * maxNew];
        var lengths = new int[rows];
        var finish = new FinishReason?[rows];
        var slotRows = Enumerable.Range(0, rows).ToArray();
        var stepTokens = new int[rows];
        var stepMask = new bool[rows];
        var stepPositions = new int[rows];
        var probabilities = new float[vocab];
        var order = new ulong[vocab];
        for (int step = 0; step < maxNew; step++)
        {
            int live = 0;
            var (drawn, drawnLogProbs) = sampleOnDevice
                ? SampleOnDevice(deviceLogits!, slotRows.Select(row => finish[row] is null).ToArray(), options.Sampler, rng)
                : (null, null);
            for (int slot = 0; slot < slotRows.Length; slot++)
            {
                int row = slotRows[slot];
                if (finish[row] is not null) { stepMask[slot] = false; continue; }
                int token;
                float logProb;
                if (drawn != null) (token, logProb) = (drawn[slot], drawnLogProbs![slot]);
                else
                {
                    var rowLogits = logits.AsSpan(slot * vocab, vocab);
                    token = Sampler.Sample(rowLogits, options.Sampler, rng, probabilities, order);
                    logProb = Sampler.LogProbability(rowLogits, token);
                }
                int at = row * maxNew + lengths[row]++;
                completions[at] = token;
                logProbs[at] = logProb;
                finish[row] = FinishOf(completions.AsSpan(row * maxNew, lengths[row]), options);
                stepTokens[slot] = token;
                stepMask[slot] = true;
                stepPositions[slot] = promptLengths[row] + step;
                if (finish[row] is null) live++;
            }
            if (live == 0) break;
            if (live <= slotRows.Length / 2)
            {
                var keep = Enumerable.Range(0, slotRows.Length).Where(slot => finish[slotRows[slot]] is null).ToArray();
                var compacted = cache.Gather(keep);
                cache.Release();
                cache = compacted;
                slotRows = keep.Select(slot => slotRows[slot]).ToArray();
                stepTokens = keep.Select(slot => stepTokens[slot]).ToArray();
                stepPositions = keep.Select(slot => stepPositions[slot]).ToArray();
                stepMask = Enumerable.Repeat(true, live).ToArray();
            }
            using (DeviceArray.Scope())
            {
                var next = model.Forward(stepTokens, slotRows.Length, 1, cache, stepMask, stepPositions); // (R', 1, V)
                if (sampleOnDevice)
                {
                    deviceLogits!.Release();
                    deviceLogits = KeepRows(next, Enumerable.Range(0, slotRows.Length).ToArray(), vocab);
                }
                else logits = HostValues(next);
            }
        }
        cache.Release();
        deviceLogits?.Release();

        var results = new GenerationResult[rows];
        for (int row = 0; row < rows; row++)
            results[row] = new GenerationResult(row / samplesPerPrompt, row % samplesPerPrompt,
                completions.AsSpan(row * maxNew, lengths[row]).ToArray(), logProbs.AsSpan(row * maxNew, lengths[row]).ToArray(),
                finish[row]!.Value);
        return results;
    }

    /// <summary>
    /// One token for each slot whose row is live, drawn on the device from its logits (n, V) as Sampler.Sample
    /// draws on the host: the argmax, or the inverse CDF of the temperature softmax (after min-p) at a coin
    /// from rng, one coin per live slot in slot order (the draws the host loop makes, in its order); and
    /// its temperature-1 log-prob. Only the n tokens and n log-probs come back.
    /// </summary>
    private static (int[] Tokens, float[] LogProbs) SampleOnDevice(Tensor logits, bool[] live, SamplerOptions sampler, Rng rng)
    {
        var device = logits.Device;
        int n = live.Length, vocab = logits.Dim(-1);
        using var tokens = device.Pool.Rent<int>(n);
        if (sampler.IsGreedy) SamplerKernels.ArgMax(device, logits.View, tokens.View, n, vocab);
        else
        {
            var coins = new float[n];
            for (int slot = 0; slot < n; slot++)
                if (live[slot]) coins[slot] = rng.NextFloat();
            using var deviceCoins = device.UploadToPool<float>(coins);
            using var probabilities = device.Pool.Rent<float>((long)n * vocab);
            SamplerKernels.Probabilities(device, logits.View, probabilities.View, n, vocab, sampler.Temperature, sampler.MinP);
            SamplerKernels.Draw(device, probabilities.View, deviceCoins.View, tokens.View, n, vocab);
        }
        using var logSumExps = device.Pool.Rent<float>(n);
        using var tokenLogProbs = device.Pool.Rent<float>(n);
        TokenLogProbKernels.Forward(device, logits.View, tokens.View, logSumExps.View, tokenLogProbs.View, n, vocab);
        return (Device.DownloadArray<int>(tokens.View), Device.DownloadArray<float>(tokenLogProbs.View));
    }

    /// <summary>Rows of a GPU tensor of logits (.., V), copied into a tensor (rows, V) that outlives the step's scope.</summary>
    private static Tensor KeepRows(Tensor source, int[] rows, int vocab)
    {
        var kept = Tensor.Empty(source.Device, [rows.Length, vocab], persistent: true);
        EmbeddingKernels.Forward(source.Device, source.View, source.Device.Indices(rows), kept.View, vocab);   // a row gather
        return kept;
    }

    /// <summary>The logits on the host, where the sampler reads them (a GPU model's are copied back, and their memory released).</summary>
    private static float[] HostValues(Tensor logits)
    {
        if (!logits.IsOnDevice) return logits.Data;
        var values = logits.ToArray();
        logits.Release();
        return values;
    }

    /// <summary>Why a completion ends after its latest token, or null if it goes on.</summary>
    private static FinishReason? FinishOf(ReadOnlySpan<int> completion, GenerationOptions options)
    {
        if (completion[^1] == options.EosToken) return FinishReason.Eos;
        if (options.StopSequences is { } stops)
            foreach (var stop in stops)
                if (stop.Length > 0 && completion.EndsWith(stop)) return FinishReason.StopSequence;
        if (completion.Length == options.MaxNewTokens) return FinishReason.MaxNewTokens;
        return null;
    }

    private static void Validate(TransformerConfig config, IReadOnlyList<int[]> prompts, int samplesPerPrompt, GenerationOptions options)
    {
        if (prompts.Count == 0) throw new ArgumentException("no prompts");
        if (samplesPerPrompt <= 0) throw new ArgumentOutOfRangeException(nameof(samplesPerPrompt), $"samples per prompt must be positive, got {samplesPerPrompt}");
        if (options.MaxNewTokens <= 0) throw new ArgumentOutOfRangeException(nameof(options), $"max new tokens must be positive, got {options.MaxNewTokens}");
        options.Sampler.Validate();
        for (int p = 0; p < prompts.Count; p++)
        {
            var prompt = prompts[p];
            if (prompt.Length == 0) throw new ArgumentException($"prompt {p} is empty");
            if (prompt.Length + options.MaxNewTokens > config.MaxSeqLen)
                throw new ArgumentException($"prompt {p} has {prompt.Length} tokens; with {options.MaxNewTokens} new tokens that exceeds the context of {config.MaxSeqLen}");
            foreach (int token in prompt)
                if ((uint)token >= (uint)config.VocabSize)
                    throw new ArgumentOutOfRangeException(nameof(prompts), $"prompt {p} has token {token}, outside the vocabulary [0, {config.VocabSize})");
        }
    }
}
