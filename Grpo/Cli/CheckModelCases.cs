// The whole-model part of `grpo check`: a training step, a GRPO step and sampling of the small model,
// run once on the CPU (the reference) and once with the model on the device, tensor by tensor.
//
//   sample      greedy completions of the held-out prompts through the KV cache: the tokens must be
//               identical, their log-probs within 1e-4 (on a GPU through the fused decode step)
//   decode step the logits of three cached one-token steps after a left-padded prefill, on the device
//               once through the fused kernels (Transformer.FusedDecode), once op by op and once through
//               the spread kernels (Transformer.SpreadDecode)
//   train step  one SFT step (forward, cross-entropy, backward, clip to norm 1, AdamW): the logits, the
//               loss, every parameter's gradient and every parameter after the update
//   grpo step   one GRPO gradient step on completions sampled on the CPU from the same model, with
//               the demo's objective plus a KL term (beta 0.04) to a reference model: the policy's and
//               the reference's per-token log-probs, the loss, the mean KL, every gradient, every parameter
//               after the update
// Both runs start from the same weights and read the same batch, so their only difference is where
// the arithmetic runs. Gradients and logits are judged against their tensor's scale (s, 1e-4: fp32
// sums in another order differ by ~1e-6 of the scale). AdamW runs with eps 1e-3 here: with PyTorch's
// 1e-8 the first step moves every weight by lr * g / |g|, so a gradient element within rounding of 0
// would flip its step from +lr to -lr between two correct runs; with 1e-3 the step is smooth in g and
// a wrong update still shows (the kernel's arithmetic does not depend on eps).
// With MatMulPrecision.Bf16 (`check --precision bf16`) both runs set the model's Precision: its linear layers
// multiply bf16-rounded operands with fp32 sums, the CPU run being the spec (Ops/MatMul.cs). The two runs round
// the same fp32 values alike, except where upstream fp32 sums in another order land an input on the other side
// of a bf16 rounding boundary (one bf16 step, 2^-8 relative, in a rare element); such flips carry through the
// layers, so the tolerances are wider (Bf16Tolerance), but stay under bf16's own distance from fp32 on logits and
// gradients. Sampling is left out in bf16: a greedy token whose top two logits sit within bf16 noise of each
// other could differ between two correct runs.
// Model: the shipped warm start (the demo's model, on its own task) at realistic sizes; a one-layer
// tiny model and a handful of short rows at small sizes (for ILGPU's CPU accelerator).
using Grpo.Compute;
using Grpo.Model;
using Grpo.Ops;
using Grpo.Optim;
using Grpo.Rl;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Cli;

internal static class CheckModelCases
{
    /// <summary>What both runs read: the model, the SFT batch, and the GRPO batch with its old log-probs and advantages.</summary>
    private sealed record Inputs(Transformer Model, Transformer Reference, int[][] Prompts, SequenceBatch Sft, SequenceBatch Grpo,
        float[] OldLogProbs, float[] Advantages, float[] Mask, GenerationOptions Greedy);

    public static IEnumerable<CheckCommand.Case> Cases(Rng rng, bool small, MatMulPrecision precision = MatMulPrecision.Fp32)
    {
        var inputs = new Lazy<Inputs>(() => MakeInputs(rng, small));
        var reference = new Lazy<Dictionary<string, float[]>>(() => Run(inputs.Value, Device.Cpu, precision));
        var onDevice = new Dictionary<Device, Dictionary<string, float[]>>();
        Dictionary<string, float[]> Results(Device device)
        {
            if (!onDevice.TryGetValue(device, out var results)) onDevice[device] = results = Run(inputs.Value, device, precision);
            return results;
        }
        // The tensor names are known once the inputs exist; build them from a model of the same shape.
        var names = new Lazy<string[]>(() => inputs.Value.Model.Parameters.Select(p => p.Name).ToArray());
        bool bf16 = precision == MatMulPrecision.Bf16;
        string shape = (small ? "tiny, 1 layer" : "warm start (small preset)") + (bf16 ? ", bf16" : "");

        CheckCommand.Case Compare(string kernel, string what, string key, double tolerance, bool scaled) =>
            new(kernel, what, shape, bf16 ? Bf16Tolerance(key, tolerance) : tolerance, scaled, () => reference.Value[key], device => Results(device)[key], NeedsGrad: true);

        if (!bf16)
        {
            yield return Compare("sample", "greedy tokens (KV cache)", "sample.tokens", 0, false);
            yield return Compare("sample", "their log-probs", "sample.logprobs", 1e-4, true);
            yield return Compare("decode step", "logits, fused kernels (3 cached steps)", "decode.fused", 1e-4, true);
            yield return Compare("decode step", "logits, op by op (3 cached steps)", "decode.unfused", 1e-4, true);
            yield return Compare("decode step", "logits, spread kernels (3 cached steps)", "decode.spread", 1e-4, true);
        }
        yield return Compare("train step", "logits", "sft.logits", 1e-4, true);
        yield return Compare("train step", "cross-entropy loss", "sft.loss", 1e-5, false);
        yield return Compare("train step", "gradient norm (before clipping)", "sft.norm", 1e-4, false);
        foreach (var name in Names(names))
            yield return Compare("train step", "d " + Short(name), "sft.grad." + name, 1e-4, true);
        foreach (var name in Names(names))
            yield return Compare("train step", "after AdamW: " + Short(name), "sft.weight." + name, 1e-4, true);
        yield return Compare("grpo step", "policy log-probs", "grpo.logprobs", 1e-4, true);
        yield return Compare("grpo step", "reference log-probs", "grpo.ref", 1e-4, true);
        yield return Compare("grpo step", "loss (clipped surrogate - beta KL)", "grpo.loss", 1e-4, true);
        yield return Compare("grpo step", "mean KL (k3)", "grpo.kl", 1e-3, true);
        foreach (var name in Names(names))
            yield return Compare("grpo step", "d " + Short(name), "grpo.grad." + name, 1e-4, true);
        foreach (var name in Names(names))
            yield return Compare("grpo step", "after AdamW: " + Short(name), "grpo.weight." + name, 1e-4, true);
    }

    /// <summary>bf16's tolerance for a compared tensor (see the header): the fp32 one widened to what a rare flipped
    /// rounding carried through the model gives.</summary>
    private static double Bf16Tolerance(string key, double fp32Tolerance) => key switch
    {
        "sft.loss" => 1e-3,
        "grpo.kl" => 5e-2,
        // The loss is a mean of advantage-weighted ratios whose advantages sum to zero: a value near 0 made of
        // terms of size ~1, so its error relative to itself is wide (H200: 1.2e-5 absolute, 1.2e-2 relative).
        "grpo.loss" => 5e-2,
        _ when key.Contains(".weight.") => 5e-3,
        _ when key.Contains(".grad.") => 3e-2,
        _ => Math.Max(fp32Tolerance, 1e-2),
    };

    /// <summary>The parameter names, produced lazily (iterating them builds the inputs, which happens when the cases run).</summary>
    private static IEnumerable<string> Names(Lazy<string[]> names)
    {
        foreach (var name in names.Value) yield return name;
    }

    private static string Short(string name) => name.Replace("model.layers.", "L").Replace(".weight", "").Replace("self_attn.", "").Replace("mlp.", "");

    private static Inputs MakeInputs(Rng rng, bool small)
    {
        var task = new ArithmeticTask();
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        string warmStart = Path.Combine(AppContext.BaseDirectory, DemoCommand.WarmStartFolder);
        Transformer model = !small && Directory.Exists(warmStart)
            ? Checkpoint.LoadModel(warmStart)
            : new Transformer(TransformerConfig.Tiny with { Layers = 1, VocabSize = tokenizer.VocabSize, MaxSeqLen = 128 }, rng.NextULong());
        int questions = small ? 2 : 16, groupSize = small ? 2 : 8, maxNew = small ? 6 : 48;
        var problems = Enumerable.Range(0, questions).Select(_ => task.SampleTraining(rng)).ToArray();
        var prompts = problems.Select(p => tokenizer.Encode(p.Prompt, addBos: true)).ToArray();

        // SFT: each prompt with its worked solution.
        var solutions = problems.Select(p => tokenizer.Encode(p.Solution).Append(CharTokenizer.Eos).ToArray()).ToArray();
        var sft = new SequenceBatch(prompts, solutions, CharTokenizer.Pad);

        // GRPO: G completions per prompt sampled on the CPU, scored, with outcome advantages.
        var sampled = Generator.Generate(model, prompts, groupSize,
            new GenerationOptions(maxNew, new SamplerOptions(), CharTokenizer.Eos), rng);
        var rewards = Rewards.ForTask(task).Score(sampled.Select(o => problems[o.PromptIndex]).ToArray(),
            sampled.Select(o => tokenizer.Decode(o.Tokens)).ToArray()).Total;
        var perOutput = Advantages.Outcome(rewards, groupSize);
        var grpo = new SequenceBatch(sampled.Select(o => prompts[o.PromptIndex]).ToArray(), sampled.Select(o => o.Tokens).ToArray(), CharTokenizer.Pad);
        var oldLogProbs = new float[grpo.Inputs.Length];
        var advantages = new float[grpo.Inputs.Length];
        for (int b = 0; b < sampled.Length; b++)
            for (int j = 0; j < sampled[b].NewTokens; j++)
            {
                oldLogProbs[grpo.CompletionIndex(b, j)] = sampled[b].LogProbs[j];
                advantages[grpo.CompletionIndex(b, j)] = perOutput[b];
            }

        // The reference: the same model with every weight nudged, so the KL term and its gradient are not zero.
        var referenceModel = model.CopyTo(Device.Cpu);
        foreach (var (_, value) in referenceModel.Parameters)
        {
            var data = value.Data;
            for (int i = 0; i < data.Length; i++) data[i] += 0.01f * rng.NextGaussian();
        }
        return new Inputs(model, referenceModel, prompts, sft, grpo, oldLogProbs, advantages, grpo.CompletionMask,
            new GenerationOptions(maxNew, SamplerOptions.Greedy, CharTokenizer.Eos));
    }

    /// <summary>Sampling, the SFT step and the GRPO step with the model on device; every compared tensor by name, on the host.</summary>
    private static Dictionary<string, float[]> Run(Inputs inputs, Device device, MatMulPrecision precision)
    {
        var results = new Dictionary<string, float[]>();

        if (precision == MatMulPrecision.Fp32)
        {
            var sampler = inputs.Model.To(device);
            var sampled = Generator.Generate(sampler, inputs.Prompts, 1, inputs.Greedy, new Rng(0));
            results["sample.tokens"] = sampled.SelectMany(o => o.Tokens.Append(-1)).Select(t => (float)t).ToArray();
            results["sample.logprobs"] = sampled.SelectMany(o => o.LogProbs).ToArray();
            results["decode.fused"] = DecodeSteps(sampler, inputs.Prompts, fused: true);
            results["decode.unfused"] = DecodeSteps(sampler, inputs.Prompts, fused: false);
            results["decode.spread"] = DecodeSteps(sampler, inputs.Prompts, fused: true, spread: true);
        }

        // One SFT step.
        var model = inputs.Model.CopyTo(device);
        model.Precision = precision;
        var parameters = model.Parameters.Select(p => p.Value).ToArray();
        var optimizer = new AdamW(model.Parameters, 1e-3, eps: 1e-3);
        var batch = inputs.Sft;
        var logits = model.Forward(batch.Inputs, batch.Batch, batch.SeqLen);
        var loss = Op.CrossEntropy(logits, batch.Targets, batch.CompletionMask);
        results["sft.logits"] = logits.ToArray();
        results["sft.loss"] = [loss.Item()];
        Autograd.Backward(loss);
        results["sft.norm"] = [GradClip.ClipGlobalNorm(parameters, 1f)];
        foreach (var (name, value) in model.Parameters) results["sft.grad." + name] = value.GradToArray()!;
        optimizer.Step();
        foreach (var (name, value) in model.Parameters) results["sft.weight." + name] = value.ToArray();

        // One GRPO step from the same start, with a KL term to the reference.
        model = inputs.Model.CopyTo(device);
        model.Precision = precision;
        var referenceModel = inputs.Reference.CopyTo(device);
        referenceModel.Precision = precision;
        parameters = model.Parameters.Select(p => p.Value).ToArray();
        optimizer = new AdamW(model.Parameters, 1e-3, eps: 1e-3);
        batch = inputs.Grpo;
        float[] refLogProbs;
        using (Autograd.NoGrad())
            refLogProbs = Op.TokenLogProbs(referenceModel.Forward(batch.Inputs, batch.Batch, batch.SeqLen), batch.Targets).ToArray();
        var logProbs = Op.TokenLogProbs(model.Forward(batch.Inputs, batch.Batch, batch.SeqLen), batch.Targets).To(Device.Cpu);
        var objective = PolicyLoss.Compute(logProbs, inputs.OldLogProbs, refLogProbs, inputs.Advantages, inputs.Mask,
            new PolicyLossOptions { Beta = 0.04f, Aggregation = LossAggregation.Token });
        results["grpo.logprobs"] = Masked(logProbs.Data, inputs.Mask);
        results["grpo.ref"] = Masked(refLogProbs, inputs.Mask);
        results["grpo.loss"] = [objective.Loss.Item()];
        results["grpo.kl"] = [(float)objective.Statistics.MeanKl];
        Autograd.Backward(objective.Loss);
        GradClip.ClipGlobalNorm(parameters, 1f);
        foreach (var (name, value) in model.Parameters) results["grpo.grad." + name] = value.GradToArray()!;
        optimizer.Step();
        foreach (var (name, value) in model.Parameters) results["grpo.weight." + name] = value.ToArray();
        return results;
    }

    /// <summary>
    /// Logits of three cached one-token steps after a left-padded prefill of every prompt, with
    /// Transformer.FusedDecode and SpreadDecode set as asked (a GPU takes the fused kernels when the model fits them,
    /// the spread ones when SpreadDecode is set).
    /// </summary>
    private static float[] DecodeSteps(Transformer model, int[][] prompts, bool fused, bool spread = false)
    {
        using var noGrad = Autograd.NoGrad();
        int B = prompts.Length, width = prompts.Max(p => p.Length), steps = 3;
        var tokens = new int[B * width];
        var mask = new bool[B * width];
        var positions = new int[B * width];
        for (int b = 0; b < B; b++)
            for (int t = width - prompts[b].Length; t < width; t++)
            {
                int i = t - (width - prompts[b].Length);
                (tokens[b * width + t], mask[b * width + t], positions[b * width + t]) = (prompts[b][i], true, i);
            }
        var cache = new KvCache(model.Config, B, width + steps, model.Device);
        model.FusedDecode = fused;
        model.SpreadDecode = spread;
        try
        {
            model.Forward(tokens, B, width, cache, mask, positions);
            var logits = new List<float>();
            for (int s = 0; s < steps; s++)
            {
                var stepTokens = prompts.Select(p => p[s % p.Length]).ToArray();
                var stepPositions = prompts.Select(p => p.Length + s).ToArray();
                logits.AddRange(model.Forward(stepTokens, B, 1, cache, null, stepPositions).ToArray());
            }
            return logits.ToArray();
        }
        finally
        {
            model.FusedDecode = true;
            model.SpreadDecode = false;
            cache.Release();
        }
    }

    /// <summary>The values at completion tokens (the rest are padding or prompt, which no loss reads).</summary>
    private static float[] Masked(float[] values, float[] mask) => values.Where((_, i) => mask[i] != 0).ToArray();
}
