// `grpo bench [--device cpu|cuda] [--json]`: speed figures, one JSON object a line, with the same
// figure names as the PyTorch peers in shared/bench (cpu_sgemm with n and gflops, cpu_train_step with
// tok_per_s, cpu_generate with new_tok_per_s), so that a reader can put the two outputs side by side.
// A benchmark prints; it never asserts a time.
// On CUDA (GpuBench.cs): sgemm_fp32 at 4096 (as torch_gpu_anchor.py's sgemm_fp32, cuBLAS 51 TFLOP/s
// on the H200; sgemm_fp32_v1 the older kernel beside it) and element-wise GB/s (against its copy_bw, 4.24 TB/s),
// the model figures, and last gemm_bf16 / gemm_bf16_v1 (tensor cores, vs the anchor's gemm_bf16, cuBLAS
// 761 TFLOP/s; last because a fault in inline PTX would spoil the CUDA context for what follows).
// Correctness is `grpo check`'s job.
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Grpo.Compute;
using Grpo.Model;
using Grpo.Ops;
using Grpo.Optim;
using Grpo.Sampling;

namespace Grpo.Cli;

public static class BenchCommand
{
    public static Command Create()
    {
        var device = DeviceOption.Create("cpu");
        var json = new Option<bool>("--json") { Description = "only the JSON lines" };
        var shape = new Option<string>("--shape") { Description = "on cuda, the model figures' shape: small (torch_gpu_anchor.py's default) or mid (its 134M one)", DefaultValueFactory = _ => "small" };
        var command = new Command("bench", "Measure speed: matmul GFLOP/s, training step tokens/s, sampling new tokens/s") { device, json, shape };
        command.SetAction(parse =>
        {
            if (parse.GetValue(shape) is not ("small" or "mid"))
            {
                Console.Error.WriteLine($"error: --shape must be small or mid, not '{parse.GetValue(shape)}'");
                return 1;
            }
            using var opened = DeviceOption.Open(parse.GetValue(device)!);
            if (opened == null) return 1;
            if (opened.Kind == DeviceKind.CpuAccelerator)
            {
                Console.Error.WriteLine("error: bench times cpu or cuda; ILGPU's CPU accelerator is a test device, not a backend");
                return 1;
            }
            bool mid = parse.GetValue(shape) == "mid";
            var figures = opened.IsCpu
                ? CpuSgemm().Append(CpuTrainStep()).Append(CpuGenerate())
                : GpuBench.Sgemm(opened).Concat(GpuBench.Elementwise(opened)).Concat(GpuBench.Model(opened, mid)).Concat(GpuBench.GemmBf16(opened));
            foreach (var figure in figures) Console.WriteLine(JsonSerializer.Serialize(figure));
            return 0;
        });
        return command;
    }

    /// <summary>C = A @ B for n in 256, 512, 1024, as torch_cpu_anchor.py does (same reps).</summary>
    public static IEnumerable<Dictionary<string, object>> CpuSgemm()
    {
        var rng = new Random(0);
        foreach (int n in new[] { 256, 512, 1024 })
        {
            var a = new float[n * n]; var b = new float[n * n]; var c = new float[n * n];
            for (int i = 0; i < a.Length; i++) { a[i] = (float)rng.NextDouble() - 0.5f; b[i] = (float)rng.NextDouble() - 0.5f; }
            int reps = n <= 256 ? 200 : n <= 512 ? 40 : 8;
            CpuGemm.Multiply(a, b, c, n, n, n, accumulate: false);
            var watch = Stopwatch.StartNew();
            for (int r = 0; r < reps; r++) CpuGemm.Multiply(a, b, c, n, n, n, accumulate: false);
            double seconds = watch.Elapsed.TotalSeconds / reps;
            yield return new() { ["fig"] = "cpu_sgemm", ["n"] = n, ["gflops"] = Math.Round(2.0 * n * n * n / seconds / 1e9, 2) };
        }
    }

    /// <summary>
    /// One training step (forward, cross-entropy, backward, AdamW at lr 1e-3) of the CpuBench model on
    /// 16 sequences of 64 random tokens, as torch_cpu_anchor.py's step(): the loss predicts each token
    /// from itself (ids are their own targets, not shifted), which costs the same as next-token targets.
    /// One warm-up, then the mean of 20 steps; tok_per_s = batch * seq / seconds.
    /// </summary>
    public static Dictionary<string, object> CpuTrainStep(int batch = 16, int seqLen = 64, int reps = 20) =>
        TrainStep(Device.Cpu, TransformerConfig.CpuBench, "cpu_train_step", batch, seqLen, reps);

    /// <summary>The training step on any device (the GPU figure: train_step_fp32 at torch_gpu_anchor.py's shapes).</summary>
    public static Dictionary<string, object> TrainStep(Device device, TransformerConfig config, string figure, int batch, int seqLen, int reps)
    {
        var model = new Transformer(config, seed: 0).To(device);
        var optimizer = new AdamW(model.Parameters, learningRate: 1e-3);
        var rng = new Rng(0);
        var tokens = Enumerable.Range(0, batch * seqLen).Select(_ => rng.NextInt(config.VocabSize)).ToArray();
        void Step()
        {
            var logits = model.Forward(tokens, batch, seqLen);   // (B, T, V)
            var loss = Op.CrossEntropy(logits, tokens);
            optimizer.ZeroGrad();
            Autograd.Backward(loss);
            optimizer.Step();
        }
        Step();
        device.Synchronize();
        var watch = Stopwatch.StartNew();
        for (int r = 0; r < reps; r++) Step();
        device.Synchronize();
        double seconds = watch.Elapsed.TotalSeconds / reps;
        return new() { ["fig"] = figure, ["params"] = config.ParameterCount(), ["batch"] = batch, ["seq"] = seqLen,
            ["ms"] = Math.Round(seconds * 1e3, 2), ["tok_per_s"] = Math.Round(batch * seqLen / seconds, 1) };
    }

    /// <summary>
    /// Batched sampling with the KV cache, as torch_cpu_anchor.py's generate(): 64 prompts of 16 random
    /// tokens, 48 new tokens each at temperature 1 (no EOS), on the CpuBench model with random weights.
    /// One warm-up, then the mean of 3 runs; new_tok_per_s = batch * new / seconds.
    /// </summary>
    public static Dictionary<string, object> CpuGenerate(int batch = 64, int promptLength = 16, int newTokens = 48, int reps = 3) =>
        Generate(Device.Cpu, TransformerConfig.CpuBench, "cpu_generate", batch, promptLength, newTokens, reps);

    /// <summary>Sampling on any device (the GPU figure: generate at torch_gpu_anchor.py's shapes, against its generate_hf).</summary>
    public static Dictionary<string, object> Generate(Device device, TransformerConfig config, string figure, int batch, int promptLength, int newTokens, int reps)
    {
        var model = new Transformer(config, seed: 0).To(device);
        var rng = new Rng(0);
        var prompts = Enumerable.Range(0, batch)
            .Select(_ => Enumerable.Range(0, promptLength).Select(_ => rng.NextInt(config.VocabSize)).ToArray())
            .ToArray();
        var options = new GenerationOptions(newTokens, new SamplerOptions(Temperature: 1f));
        Generator.Generate(model, prompts, 1, options, rng);
        var watch = Stopwatch.StartNew();
        for (int r = 0; r < reps; r++) Generator.Generate(model, prompts, 1, options, rng);
        double seconds = watch.Elapsed.TotalSeconds / reps;
        return new() { ["fig"] = figure, ["batch"] = batch, ["prompt"] = promptLength, ["new"] = newTokens,
            ["s"] = Math.Round(seconds, 4), ["new_tok_per_s"] = Math.Round(batch * newTokens / seconds, 1) };
    }
}
