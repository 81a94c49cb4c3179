// `grpo bench [--device cpu|cuda] [--json]`: speed figures, one JSON object a line, with the same
// figure names as the PyTorch peers in shared/bench (cpu_sgemm with n and gflops, cpu_train_step with
// tok_per_s, cpu_generate with new_tok_per_s), so that a reader can put the two outputs side by side.
// A benchmark prints; it never asserts a time.
// On CUDA (GpuBench.cs): sgemm_fp32 at 4096 (as torch_gpu_anchor.py's sgemm_fp32, cuBLAS 51 TFLOP/s
// on the H200; sgemm_fp32_v1 the older kernel beside it) and element-wise GB/s (against its copy_bw, 4.24 TB/s),
// attention v2 and v1 at a decode and a training shape, the model figures, and last gemm_bf16 / gemm_bf16_v1 (tensor cores, vs the anchor's gemm_bf16, cuBLAS
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
using Spectre.Console;

namespace Grpo.Cli;

public static class BenchCommand
{
    public static Command Create()
    {
        var device = DeviceOption.Create("cpu");
        var json = new Option<bool>("--json") { Description = "only the JSON lines" };
        var shape = new Option<string>("--shape") { Description = "on cuda, the model figures' shape: small (torch_gpu_anchor.py's default) or mid (its 134M one)", DefaultValueFactory = _ => "small" };
        var only = new Option<string>("--figures") { Description = "on cuda, which figures: any of sgemm,elementwise,ops,attention,train,generate,gemm_bf16 (comma-separated)", DefaultValueFactory = _ => "sgemm,elementwise,attention,train,generate,gemm_bf16" };
        var peer = new Option<string?>("--peer") { Description = "the PyTorch peer script's output (shared/bench/torch_*_anchor.py): adds each figure's ratio to it" };
        var command = new Command("bench", "Measure speed: matmul GFLOP/s, training step tokens/s, sampling new tokens/s") { device, json, shape, only, peer };
        command.SetAction(parse =>
        {
            if (parse.GetValue(shape) is not ("small" or "mid"))
            {
                Console.Error.WriteLine($"error: --shape must be small or mid, not '{parse.GetValue(shape)}'");
                return 1;
            }
            List<System.Text.Json.Nodes.JsonObject>? peers = null;
            try
            {
                if (parse.GetValue(peer) is { } peerFile) peers = BenchPeer.Read(peerFile);
            }
            catch (Exception error) when (error is ArgumentException or IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"error: {error.Message}");
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
            IEnumerable<Dictionary<string, object>> figures;
            try
            {
                figures = opened.IsCpu
                    ? CpuSgemm().Append(CpuTrainStep()).Append(CpuGenerate())
                    : GpuBench.Figures(opened, parse.GetValue(only)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries), mid);
            }
            catch (ArgumentException error)
            {
                Console.Error.WriteLine($"error: {error.Message}");
                return 1;
            }
            var printed = new List<Dictionary<string, object>>();
            foreach (var figure in figures)
            {
                if (peers != null) BenchPeer.AddRatio(figure, peers);
                Console.WriteLine(JsonSerializer.Serialize(figure));
                printed.Add(figure);
            }
            if (peers != null && !parse.GetValue(json)) AnsiConsole.Write(RatioTable(printed));
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

    /// <summary>The training step on any device (the GPU figures: train_step_fp32 at torch_gpu_anchor.py's shapes, and
    /// train_step_bf16 with the linear layers' matmuls in bf16).</summary>
    public static Dictionary<string, object> TrainStep(Device device, TransformerConfig config, string figure, int batch, int seqLen, int reps,
        MatMulPrecision precision = MatMulPrecision.Fp32)
    {
        var model = new Transformer(config, seed: 0).To(device);
        model.Precision = precision;
        var optimizer = new AdamW(model.Parameters, learningRate: 1e-3);
        var rng = new Rng(0);
        var tokens = Enumerable.Range(0, batch * seqLen).Select(_ => rng.NextInt(config.VocabSize)).ToArray();
        // Where a step's time goes: each phase ends with a synchronization on the profiled repetitions only.
        var phases = new double[3];
        void Step(bool profile)
        {
            using var scope = DeviceArray.Scope();
            var phase = Stopwatch.StartNew();
            void EndPhase(int i) { if (!profile) return; device.Synchronize(); phases[i] += phase.Elapsed.TotalMilliseconds; phase.Restart(); }
            var logits = model.Forward(tokens, batch, seqLen);   // (B, T, V)
            var loss = Op.CrossEntropy(logits, tokens);
            EndPhase(0);
            optimizer.ZeroGrad();
            Autograd.Backward(loss);
            EndPhase(1);
            optimizer.Step();
            EndPhase(2);
        }
        Step(false);
        for (int r = 0; r < 3; r++) Step(true);
        device.Synchronize();
        var costs = HostCosts.Start(device);
        var watch = Stopwatch.StartNew();
        for (int r = 0; r < reps; r++) Step(false);
        device.Synchronize();
        double seconds = watch.Elapsed.TotalSeconds / reps;
        return costs.Add(device, reps, new() { ["fig"] = figure, ["params"] = config.ParameterCount(), ["batch"] = batch, ["seq"] = seqLen,
            ["ms"] = Math.Round(seconds * 1e3, 2), ["tok_per_s"] = Math.Round(batch * seqLen / seconds, 1),
            ["forward_ms"] = Phases(0), ["backward_ms"] = Phases(1), ["adamw_ms"] = Phases(2) });
        double Phases(int i) => Math.Round(phases[i] / 3, 2);
    }

    /// <summary>
    /// Batched sampling with the KV cache, as torch_cpu_anchor.py's generate(): 64 prompts of 16 random
    /// tokens, 48 new tokens each at temperature 1 (no EOS), on the CpuBench model with random weights.
    /// One warm-up, then the mean of 3 runs; new_tok_per_s = batch * new / seconds.
    /// </summary>
    public static Dictionary<string, object> CpuGenerate(int batch = 64, int promptLength = 16, int newTokens = 48, int reps = 3) =>
        Generate(Device.Cpu, TransformerConfig.CpuBench, "cpu_generate", batch, promptLength, newTokens, reps);

    /// <summary>Sampling on any device (the GPU figure: generate at torch_gpu_anchor.py's shapes, against its generate_hf).</summary>
    /// <summary>fused false times the op-by-op decode step (Transformer.FusedDecode cleared), spread true the spread step
    /// (Transformer.SpreadDecode); launches_per_step counts a decode step's launches.</summary>
    public static Dictionary<string, object> Generate(Device device, TransformerConfig config, string figure, int batch, int promptLength, int newTokens, int reps,
        bool fused = true, int decodeThreads = 0, bool spread = false, int spreadRows = 0)
    {
        var model = new Transformer(config, seed: 0).To(device);
        model.FusedDecode = fused;
        model.SpreadDecode = spread;
        model.SpreadRowsPerBlock = spreadRows;
        model.DecodeGroupThreads = decodeThreads;
        var rng = new Rng(0);
        var prompts = Enumerable.Range(0, batch)
            .Select(_ => Enumerable.Range(0, promptLength).Select(_ => rng.NextInt(config.VocabSize)).ToArray())
            .ToArray();
        var options = new GenerationOptions(newTokens, new SamplerOptions(Temperature: 1f));
        Generator.Generate(model, prompts, 1, options, rng);
        var costs = HostCosts.Start(device);
        var watch = Stopwatch.StartNew();
        for (int r = 0; r < reps; r++) Generator.Generate(model, prompts, 1, options, rng);
        double seconds = watch.Elapsed.TotalSeconds / reps;
        var result = costs.Add(device, reps, new() { ["fig"] = figure, ["batch"] = batch, ["prompt"] = promptLength, ["new"] = newTokens,
            ["s"] = Math.Round(seconds, 4), ["new_tok_per_s"] = Math.Round(batch * newTokens / seconds, 1) });
        if (!device.IsCpu) result["launches_per_step"] = DecodeStepLaunches(device, model, batch, promptLength);
        return result;
    }

    /// <summary>Launches of one cached one-token step of batch rows (the sampler's kernels not included).</summary>
    private static long DecodeStepLaunches(Device device, Transformer model, int batch, int promptLength)
    {
        using var noGrad = Autograd.NoGrad();
        using var scope = DeviceArray.Scope();
        var cache = new KvCache(model.Config, batch, promptLength + 1, device);
        model.Forward(new int[batch * promptLength], batch, promptLength, cache);
        long before = device.Kernels.Launches;
        model.Forward(new int[batch], batch, 1, cache);
        long launches = device.Kernels.Launches - before;
        cache.Release();
        return launches;
    }

    /// <summary>What a figure cost besides the arithmetic, per repetition: garbage-collection pauses and
    /// collections, and on a GPU the kernel launches (the small shapes are bound by these, not by FLOPs).</summary>
    private sealed record HostCosts(TimeSpan Pause, int Gen0, int Gen2, long Launches, int Allocations)
    {
        public static HostCosts Start(Device device) =>
            new(GC.GetTotalPauseDuration(), GC.CollectionCount(0), GC.CollectionCount(2), device.IsCpu ? 0 : device.Kernels.Launches,
                device.IsCpu ? 0 : device.Pool.Allocations);

        public Dictionary<string, object> Add(Device device, int reps, Dictionary<string, object> figure)
        {
            figure["gc_pause_ms"] = Math.Round((GC.GetTotalPauseDuration() - Pause).TotalMilliseconds / reps, 2);
            figure["gc_gen0"] = Math.Round((GC.CollectionCount(0) - Gen0) / (double)reps, 1);
            figure["gc_gen2"] = Math.Round((GC.CollectionCount(2) - Gen2) / (double)reps, 1);
            if (!device.IsCpu)
            {
                figure["launches"] = (device.Kernels.Launches - Launches) / reps;
                figure["device_allocations"] = Math.Round((device.Pool.Allocations - Allocations) / (double)reps, 1);
            }
            return figure;
        }
    }

    /// <summary>Each figure that has a peer: ours, the peer's, and the ratio (and against torch.compile where the peer ran it).</summary>
    private static Table RatioTable(IEnumerable<Dictionary<string, object>> figures)
    {
        var table = new Table().AddColumn("figure").AddColumn("ours").AddColumn("peer").AddColumn("ratio");
        foreach (var figure in figures.Where(f => f.ContainsKey("ratio")))
        {
            string label = string.Join(" ", new[] { "fig", "op", "n", "shape" }.Where(figure.ContainsKey).Select(k => figure[k].ToString()));
            string metric = new[] { "gflops", "tflops", "tok_per_s", "new_tok_per_s", "gbps" }.First(figure.ContainsKey);
            string ratio = $"{figure["ratio"]}x" + (figure.ContainsKey("ratio_compiled") ? $" ({figure["ratio_compiled"]}x compiled)" : "");
            table.AddRow(Markup.Escape(label), $"{figure[metric]} {metric}", $"{figure["peer"]}", ratio);
        }
        return table;
    }
}
