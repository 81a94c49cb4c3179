// The GPU figures of `grpo bench --device cuda`: the kernels timed on buffers resident on the device
// (uploaded once), after a warm-up launch, between two synchronizations, so neither compilation nor
// transfers are counted. Figures and their peers in shared/bench/torch_gpu_anchor.py (same card):
//   sgemm_fp32   C = A @ B, n = 4096, 2 n^3 flops, the launcher's kernel (v4, layouts compiled in, k-step 16);
//                sgemm_fp32_v1 / _v2 / _v3 the older versions; sgemm_fp32_nt (x @ W^T) and sgemm_fp32_v4_tn
//                (A^T @ B, a weight gradient's layout) the other layouts, _v3_nt / _v3_tn the same by v3;
//                each with the driver's registers a thread; gemm_small_n the small shape's x @ W^T
//                (8192 x 256 @ 256 x 256^T) by the launcher (no peer)
//                                                           vs cuBLAS fp32 SGEMM, 51 TFLOP/s
//   sgemm_fp32_v1  the same product by v1 (scalar loads), to show the step from v1 to v2
//   elementwise  add (3 floats a element), scale and exp (2), 16M floats, bytes moved / time, by the
//                launchers' kernels (v2, Float4 loads) and as add_v1, scale_v1, exp_v1 by v1
//   gemm_bf16    C = A @ Bt^T, n = 4096, bf16 in, fp32 out, tensor cores (TensorCoreGemmKernels v2,
//                cp.async pipeline)                          vs cuBLAS bf16 (the anchor's gemm_bf16), 761 TFLOP/s
//   gemm_bf16_v1   the same by v1 (synchronous copies), to show the step from v1 to v2; both also
//                give the driver's registers a thread and local (spill) bytes: > 128 registers = 1 group an SM
//                                                           vs device copy_bw, 4.24 TB/s
//   column_sum   sum_axis (a bias gradient: 8192 rows x 2048 summed down columns, 1 float a element)
//                and rms_norm_weight_grad (x and dy, 2), bytes read / time   vs the same copy_bw
//   attention    attention forward and backward: v3 (keys across a warp's lanes), v2 (a warp per query row),
//                v1 (a thread per row), all keeping P, at the decode shape (B 64, T 1, S 128, offset 127),
//                the training shape (B 64, T = S = 128, Hq = Hkv = 4) and the long one (B 8, T = S = 512,
//                Hq = Hkv = 12; no v1); and v4 (FlashAttentionKernels, tiled, keeps L; what Op.Attention
//                runs for T > 1) at the training and long shapes; D 64, a key mask that allows every key;
//                the least bytes v1-v3 must move / time    vs the same copy_bw;
//                causal FLOPs / time (tflops)              vs fp32 SGEMM's 51 TFLOP/s (GPU.md)
//   train_step_fp32, generate   the model at the anchor's shapes (--shape small|mid)
//                                                           vs its train_step_fp32 and generate_hf
//   train_step_bf16  the same training step with the linear layers' matmuls in bf16 on tensor cores
//                (Transformer.Precision; Compute/Kernels/Bf16MatMulKernels.cs): no peer (the anchor's step is
//                fp32); read it against train_step_fp32 on the line before
//   generate_unfused   generate with Transformer.FusedDecode off (the op-by-op decode step); both give
//                launches_per_step, one cached one-token step's launches (the sampler's not counted);
//                generate_spread  generate through the spread decode step (Transformer.SpreadDecode: five launches a
//                layer over all rows, DecodeSpreadKernels.cs), at either shape; generate_spread_rows32 / _rows16
//                the same with 32 or 16 rows a group instead of 64 (Transformer.SpreadRowsPerBlock: more groups)
//                generate_fused_256 / _1024 the fused step with groups of that many threads (on CUDA; 1024 does not
//                fit the registers: the figure says so)
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Model;
using Grpo.Ops;
using Grpo.Sampling;
using System.Diagnostics;

namespace Grpo.Cli;

public static class GpuBench
{
    public static IEnumerable<Dictionary<string, object>> Sgemm(Device device, int n = 4096, int reps = 20)
    {
        using var a = Random(device, (long)n * n, 1);
        using var b = Random(device, (long)n * n, 2);
        using var c = device.Pool.Rent<float>((long)n * n);
        var versions = new (string Fig, Action Launch)[]
        {
            ("sgemm_fp32", () => MatMulKernels.MatMul(device, a.View, false, b.View, false, c.View, 1, n, n, n, sharedB: true, accumulate: false)),
            ("sgemm_fp32_v2", () => MatMulKernels.MatMulV2(device, a.View, false, b.View, false, c.View, 1, n, n, n, sharedB: true, accumulate: false)),
            ("sgemm_fp32_v1", () => MatMulKernels.MatMulV1(device, a.View, false, b.View, false, c.View, 1, n, n, n, sharedB: true, accumulate: false)),
            ("sgemm_fp32_v3", () => MatMulKernels.MatMulV3(device, a.View, false, b.View, false, c.View, 1, n, n, n, sharedB: true, accumulate: false)),
            ("sgemm_fp32_v3_nt", () => MatMulKernels.MatMulV3(device, a.View, false, b.View, true, c.View, 1, n, n, n, sharedB: true, accumulate: false)),
            ("sgemm_fp32_v3_tn", () => MatMulKernels.MatMulV3(device, a.View, true, b.View, false, c.View, 1, n, n, n, sharedB: true, accumulate: false)),
            ("sgemm_fp32_nt", () => MatMulKernels.MatMul(device, a.View, false, b.View, true, c.View, 1, n, n, n, sharedB: true, accumulate: false)),
            ("sgemm_fp32_v4_tn", () => MatMulKernels.MatMulV4(device, a.View, true, b.View, false, c.View, 1, n, n, n, sharedB: true, accumulate: false)),
        };
        var kernelNames = new Dictionary<string, string>
        {
            ["sgemm_fp32"] = "matmul_v4_nn", ["sgemm_fp32_v3"] = "matmul_v3_nn", ["sgemm_fp32_v2"] = "matmul_f4", ["sgemm_fp32_v1"] = "matmul",
            ["sgemm_fp32_v3_nt"] = "matmul_v3_nt", ["sgemm_fp32_v3_tn"] = "matmul_v3_tn", ["sgemm_fp32_nt"] = "matmul_v4_nt",
            ["sgemm_fp32_v4_tn"] = "matmul_v4_tn",
        };
        foreach (var (fig, launch) in versions)
        {
            double flops = 2.0 * n * n * n / Time(device, reps, launch);
            var figure = new Dictionary<string, object> { ["fig"] = fig, ["n"] = n, ["gflops"] = Math.Round(flops / 1e9, 1), ["tflops"] = Math.Round(flops / 1e12, 2) };
            if (device.Kernels.Attributes(kernelNames[fig]) is var (registers, localBytes))
            {
                figure["registers"] = registers;
                figure["local_bytes"] = localBytes;
            }
            yield return figure;
        }
        if (n < 4096) yield break;
        // The small shape's linear layer, x (8192, 256) @ W^T (256, 256): 128 tiles of 128 x 128 for 264 slots.
        const int rows = 8192, width = 256;
        double smallFlops = 2.0 * rows * width * width / Time(device, reps * 10, () =>
            MatMulKernels.MatMul(device, a.View, false, b.View, true, c.View, 1, rows, width, width, sharedB: true, accumulate: false));
        yield return new Dictionary<string, object> { ["fig"] = "gemm_small_n", ["m"] = rows, ["n"] = width, ["k"] = width, ["tflops"] = Math.Round(smallFlops / 1e12, 2) };
    }

    /// <summary>The tensor-core GEMM on bf16 inputs converted on the device from uniform [-1, 1) floats; 2 n^3 flops.</summary>
    public static IEnumerable<Dictionary<string, object>> GemmBf16(Device device, int n = 4096, int reps = 20)
    {
        long size = (long)n * n;
        using var a = Random(device, size, 5);
        using var bt = Random(device, size, 6);
        using var a16 = device.Pool.Rent<ushort>(size);
        using var bt16 = device.Pool.Rent<ushort>(size);
        using var c = device.Pool.Rent<float>(size);
        TensorCoreGemmKernels.ToBf16(device, a.View, a16.View);
        TensorCoreGemmKernels.ToBf16(device, bt.View, bt16.View);
        var versions = new (string Fig, bool Pipelined)[] { ("gemm_bf16", true), ("gemm_bf16_v1", false) };
        foreach (var (fig, pipelined) in versions)
        {
            // A kernel that fails to load (inline PTX the driver rejects) gives a figure with its error, not a crash.
            Dictionary<string, object> figure = new() { ["fig"] = fig, ["n"] = n };
            try
            {
                double flops = 2.0 * n * n * n / Time(device, reps, () => TensorCoreGemmKernels.Gemm(device, a16.View, bt16.View, c.View, n, n, n, pipelined));
                figure["tflops"] = Math.Round(flops / 1e12, 1);
                if (device.Kernels.Attributes(pipelined ? "tensor_core_gemm" : "tensor_core_gemm_v1") is var (registers, localBytes))
                {
                    figure["registers"] = registers;
                    figure["local_bytes"] = localBytes;
                }
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                figure["error"] = $"{error.GetType().Name}: {error.Message.Split('\n')[0]}";
            }
            yield return figure;
        }
    }

    public static IEnumerable<Dictionary<string, object>> Elementwise(Device device, int n = 1 << 24, int reps = 50)
    {
        using var a = Random(device, n, 3);
        using var b = Random(device, n, 4);
        using var y = device.Pool.Rent<float>(n);
        const int channels = 2048;
        int rows = n / channels;
        var matrix = a.View.SubView(0, (long)rows * channels);   // (rows, channels)
        var upstream = b.View.SubView(0, (long)rows * channels);
        using var inverseRms = Random(device, rows, 5);
        using var columnSums = device.Pool.Rent<float>(channels);
        var ops = new (string Fig, string Name, int FloatsMoved, Action Launch)[]
        {
            ("elementwise", "add", 3, () => ElementwiseKernels.Add(device, a.View, b.View, y.View)),
            ("elementwise", "scale", 2, () => ElementwiseKernels.Scale(device, a.View, 0.5f, y.View)),
            ("elementwise", "exp", 2, () => ElementwiseKernels.Exp(device, a.View, y.View)),
            ("elementwise", "add_v1", 3, () => ElementwiseKernels.AddV1(device, a.View, b.View, y.View)),
            ("elementwise", "scale_v1", 2, () => ElementwiseKernels.ScaleV1(device, a.View, 0.5f, y.View)),
            ("elementwise", "exp_v1", 2, () => ElementwiseKernels.ExpV1(device, a.View, y.View)),
            ("column_sum", "sum_axis", 1, () => ReduceKernels.SumAxis(device, matrix, columnSums.View, 1, rows, channels, 1f, accumulate: false)),
            ("column_sum", "rms_norm_weight_grad", 2, () => RmsNormKernels.WeightGrad(device, matrix, inverseRms.View, upstream, columnSums.View, rows, channels)),
        };
        foreach (var (fig, name, floatsMoved, launch) in ops)
        {
            double seconds = Time(device, reps, launch);
            yield return new() { ["fig"] = fig, ["op"] = name, ["n"] = n, ["gbps"] = Math.Round((double)floatsMoved * n * sizeof(float) / seconds / 1e9, 1) };
        }
    }

    /// <summary>
    /// Attention forward and backward, v3, v2 and v1, at a decode step's shape and a training step's, and v4
    /// (tiled, keeps L instead of P) at the training shapes. Bytes are the least each call must move for v1-v3:
    /// forward reads q, k, v and writes o and P; backward reads q, k, v, o, P and dO, writes dScores, and reads
    /// and writes dq, dk and dv. FLOPs (the tflops columns, for every version): the causal forward's two
    /// products, 4 B H T S D / 2 (T = S), and 2.5 times that for the backward (five products, P recomputed).
    /// </summary>
    public static IEnumerable<Dictionary<string, object>> Attention(Device device, int reps = 20)
    {
        // decode and train: the small model's shapes; long: the mid model's heads at T = S = 512, batch 8.
        var shapes = new (string Name, int B, int T, int S, int Heads, int Offset)[]
            { ("decode", 64, 1, 128, 4, 127), ("train", 64, 128, 128, 4, 0), ("long", 8, 512, 512, 12, 0) };
        const int D = 64;
        foreach (var (name, B, T, S, heads, offset) in shapes)
        {
            var a = AttentionKernels.Shape(B, T, S, heads, heads, D, offset, hasMask: true);
            long qSize = (long)B * T * heads * D, kvSize = (long)B * S * heads * D, pSize = (long)B * heads * T * S;
            using var q = Random(device, qSize, 7);
            using var k = Random(device, kvSize, 8);
            using var v = Random(device, kvSize, 9);
            using var dOutput = Random(device, qSize, 10);
            using var mask = device.Pool.Rent<int>((long)B * S);
            mask.Upload(Enumerable.Repeat(1, B * S).ToArray());
            using var output = device.Pool.Rent<float>(qSize);
            using var probs = device.Pool.Rent<float>(pSize);
            using var dScores = device.Pool.Rent<float>(pSize);
            using var dq = device.Zeros<float>(qSize);
            using var dk = device.Zeros<float>(kvSize);
            using var dv = device.Zeros<float>(kvSize);
            using var logSumExp = device.Pool.Rent<float>((long)B * heads * T);
            using var delta = device.Pool.Rent<float>((long)B * heads * T);
            double forwardFlops = 4.0 * B * heads * T * S * D / (T == S ? 2 : 1), backwardFlops = 2.5 * forwardFlops;
            long forwardBytes = sizeof(float) * (2 * qSize + 2 * kvSize + pSize);
            long backwardBytes = sizeof(float) * (5 * qSize + 6 * kvSize + 2 * pSize);
            string[] versions = name switch { "decode" => ["v3", "v2", "v1"], "train" => ["v4", "v3", "v2", "v1"], _ => ["v4", "v3", "v2"] };
            foreach (string version in versions)
            {
                void Forward()
                {
                    if (version == "v4") FlashAttentionKernels.Forward(device, q.View, k.View, v.View, mask.View, output.View, logSumExp.View, a);
                    else if (version == "v1") AttentionKernels.ForwardV1(device, q.View, k.View, v.View, mask.View, output.View, probs.View, a);
                    else if (version == "v2") AttentionKernels.ForwardV2(device, q.View, k.View, v.View, mask.View, output.View, probs.View, a);
                    else AttentionKernels.Forward(device, q.View, k.View, v.View, mask.View, output.View, probs.View, a);
                }
                void Backward()
                {
                    if (version == "v4") FlashAttentionKernels.Backward(device, q.View, k.View, v.View, mask.View, output.View, logSumExp.View, dOutput.View, delta.View, dq.View, dk.View, dv.View, a);
                    else if (version == "v1") AttentionKernels.BackwardV1(device, q.View, k.View, v.View, output.View, probs.View, dOutput.View, dScores.View, dq.View, dk.View, dv.View, a);
                    else if (version == "v2") AttentionKernels.BackwardV2(device, q.View, k.View, v.View, output.View, probs.View, dOutput.View, dScores.View, dq.View, dk.View, dv.View, a);
                    else AttentionKernels.Backward(device, q.View, k.View, v.View, output.View, probs.View, dOutput.View, dScores.View, dq.View, dk.View, dv.View, a);
                }
                double forward = Time(device, reps, Forward), backward = Time(device, reps, Backward);
                yield return new()
                {
                    ["fig"] = "attention", ["shape"] = name, ["version"] = version,
                    ["forward_us"] = Math.Round(forward * 1e6, 1), ["backward_us"] = Math.Round(backward * 1e6, 1),
                    ["forward_gbps"] = Math.Round(forwardBytes / forward / 1e9, 1), ["backward_gbps"] = Math.Round(backwardBytes / backward / 1e9, 1),
                    ["forward_tflops"] = Math.Round(forwardFlops / forward / 1e12, 2), ["backward_tflops"] = Math.Round(backwardFlops / backward / 1e12, 2),
                };
            }
        }
    }

    /// <summary>
    /// The model figures at torch_gpu_anchor.py's shapes, same names: train_step_fp32 (forward, cross-entropy,
    /// backward, AdamW; 64 x 128 tokens small, 64 x 512 mid), train_step_bf16 (the same in bf16) and generate (64 prompts of 32 random
    /// tokens, 96 new at temperature 1, the anchor's generate_hf).
    /// </summary>
    public static IEnumerable<Dictionary<string, object>> Model(Device device, bool mid, bool train = true, bool generate = true)
    {
        var config = mid ? TransformerConfig.GpuMid : TransformerConfig.GpuSmall;
        string shape = mid ? "mid" : "small";
        if (train)
        {
            var step = BenchCommand.TrainStep(device, config, "train_step_fp32", 64, mid ? 512 : 128, mid ? 5 : 20);
            step["shape"] = shape;
            yield return step;
            var bf16 = BenchCommand.TrainStep(device, config, "train_step_bf16", 64, mid ? 512 : 128, mid ? 5 : 20, MatMulPrecision.Bf16);
            bf16["shape"] = shape;
            yield return bf16;
        }
        if (generate)
        {
            var figure = BenchCommand.Generate(device, config, "generate", 64, 32, 96, 3);
            figure["shape"] = shape;
            yield return figure;
            var unfused = BenchCommand.Generate(device, config, "generate_unfused", 64, 32, 96, 3, fused: false);   // the op-by-op decode step
            unfused["shape"] = shape;
            yield return unfused;
            foreach (int rows in new[] { 0, 32, 16 })   // the spread decode step (DecodeSpreadKernels.cs), any shape; rows a group (0: 64)
            {
                string name = rows == 0 ? "generate_spread" : $"generate_spread_rows{rows}";
                Dictionary<string, object> spread;
                try { spread = BenchCommand.Generate(device, config, name, 64, 32, 96, 3, spread: true, spreadRows: rows); }
                catch (Exception error) when (error is not OutOfMemoryException)
                {
                    spread = new() { ["fig"] = name, ["error"] = error.Message.Split('\n')[0] };
                }
                spread["shape"] = shape;
                yield return spread;
            }
            if (device.Kind == DeviceKind.Cuda)
                foreach (int threads in new[] { 256, 1024 })   // the fused kernels' group size (GroupThreads: 512)
                {
                    Dictionary<string, object> sized;
                    try { sized = BenchCommand.Generate(device, config, $"generate_fused_{threads}", 64, 32, 96, 3, decodeThreads: threads); }
                    catch (Exception error) when (error is not OutOfMemoryException)
                    {
                        sized = new() { ["fig"] = $"generate_fused_{threads}", ["error"] = error.Message.Split('\n')[0] };
                    }
                    sized["shape"] = shape;
                    yield return sized;
                }
        }
    }

    /// <summary>What one launch costs: 2000 launches of an element-wise add of 1024 floats, between two synchronizations.</summary>
    public static Dictionary<string, object> Launch(Device device)
    {
        using var a = Random(device, 1024, 5);
        using var y = device.Pool.Rent<float>(1024);
        double seconds = Time(device, 2000, () => ElementwiseKernels.Add(device, a.View, a.View, y.View));
        return new() { ["fig"] = "launch", ["us"] = Math.Round(seconds * 1e6, 2) };
    }

    /// <summary>
    /// Host-side costs of single ops at the small training shape (8192 rows of 256), each timed over 20
    /// calls: "call" from entering the op to its return (the launch included), "device" the wait for the
    /// device after that. For finding where a step's time goes outside the kernels.
    /// </summary>
    public static IEnumerable<Dictionary<string, object>> OpCosts(Device device)
    {
        const int rows = 8192, width = 256, vocab = 128, reps = 20;
        var rng = new Rng(1);
        var ids = Enumerable.Range(0, rows).Select(_ => rng.NextInt(vocab)).ToArray();
        var table = new Tensor(DeviceArray.Upload(device, new float[vocab * width], scoped: false), vocab, width) { RequiresGrad = true };
        var x = new Tensor(DeviceArray.Upload(device, new float[rows * width], scoped: false), rows, width);
        var w = new Tensor(DeviceArray.Upload(device, Enumerable.Repeat(1f, width).ToArray(), scoped: false), width) { RequiresGrad = true };
        var cases = new (string Name, Action Run)[]
        {
            ("tensor_empty_2M", () => Tensor.Empty(device, [rows, width])),
            ("indices_same_8192", () => device.Indices(ids)),
            ("group_positions_by_id", () => Grpo.Compute.Kernels.EmbeddingKernels.GroupPositionsById(ids, vocab)),
            ("embedding_kernel", () => Grpo.Compute.Kernels.EmbeddingKernels.Forward(device, table.View, device.Indices(ids), x.View, width)),
            ("op_embedding", () => Op.Embedding(table, ids)),
            ("op_rmsnorm", () => Op.RmsNorm(x, w, 1e-5f)),
            ("op_add", () => Op.Add(x, x)),
        };
        foreach (var (name, run) in cases)
        {
            using var scope = DeviceArray.Scope();
            run();
            device.Synchronize();
            double call = 0, wait = 0;
            for (int r = 0; r < reps; r++)
            {
                var watch = Stopwatch.StartNew();
                run();
                call += watch.Elapsed.TotalMilliseconds;
                watch.Restart();
                device.Synchronize();
                wait += watch.Elapsed.TotalMilliseconds;
            }
            yield return new() { ["fig"] = "op_cost", ["op"] = name, ["call_us"] = Math.Round(1000 * call / reps, 1), ["device_us"] = Math.Round(1000 * wait / reps, 1) };
        }
    }

    /// <summary>The figures named (sgemm, elementwise, ops, attention, train, generate, gemm_bf16), in that order.</summary>
    public static IEnumerable<Dictionary<string, object>> Figures(Device device, string[] names, bool mid)
    {
        foreach (var name in names)
            if (name is not ("sgemm" or "elementwise" or "ops" or "attention" or "train" or "generate" or "gemm_bf16"))
                throw new ArgumentException($"unknown figure '{name}' (expected sgemm, elementwise, ops, attention, train, generate, gemm_bf16)");
        var figures = Enumerable.Empty<Dictionary<string, object>>();
        // The tensor-core figures run last: a fault in inline PTX would spoil the context for any figure after it.
        if (names.Contains("sgemm")) figures = figures.Concat(Sgemm(device));
        if (names.Contains("elementwise")) figures = figures.Concat(Elementwise(device)).Append(Launch(device));
        if (names.Contains("ops")) figures = figures.Concat(OpCosts(device));
        if (names.Contains("attention")) figures = figures.Concat(Attention(device));
        figures = figures.Concat(Model(device, mid, names.Contains("train"), names.Contains("generate")));
        return names.Contains("gemm_bf16") ? figures.Concat(GemmBf16(device)) : figures;
    }

    /// <summary>Seconds per launch: one warm-up (compiles the kernel), then reps launches between synchronizations.</summary>
    private static double Time(Device device, int reps, Action launch)
    {
        launch();
        device.Synchronize();
        var watch = Stopwatch.StartNew();
        for (int r = 0; r < reps; r++) launch();
        device.Synchronize();
        return watch.Elapsed.TotalSeconds / reps;
    }

    private static PooledBuffer<float> Random(Device device, long length, ulong seed)
    {
        var rng = new Rng(seed);
        var host = new float[length];
        for (long i = 0; i < length; i++) host[i] = 2 * rng.NextFloat() - 1;
        var buffer = device.Pool.Rent<float>(length);
        buffer.Upload(host);
        return buffer;
    }
}
