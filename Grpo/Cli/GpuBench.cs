// The GPU figures of `grpo bench --device cuda`: the kernels timed on buffers resident on the device
// (uploaded once), after a warm-up launch, between two synchronizations, so neither compilation nor
// transfers are counted. Figures and their peers in shared/bench/torch_gpu_anchor.py (same card):
//   sgemm_fp32   C = A @ B, n = 4096, 2 n^3 flops, the launcher's kernel (v2, Float4 loads)
//                                                           vs cuBLAS fp32 SGEMM, 51 TFLOP/s
//   sgemm_fp32_v1  the same product by v1 (scalar loads), to show the step from v1 to v2
//   gemm_bf16    C = A @ Bt^T, n = 4096, bf16 in, fp32 out, tensor cores (TensorCoreGemmKernels v2,
//                cp.async pipeline)                          vs cuBLAS bf16 (the anchor's gemm_bf16), 761 TFLOP/s
//   gemm_bf16_v1   the same by v1 (synchronous copies), to show the step from v1 to v2; both also
//                give the driver's registers a thread and local (spill) bytes: > 128 registers = 1 group an SM
//   elementwise  add (3 floats a element), scale and exp (2), 16M floats, bytes moved / time
//                                                           vs device copy_bw, 4.24 TB/s
//   train_step_fp32, generate   the model at the anchor's shapes (--shape small|mid)
//                                                           vs its train_step_fp32 and generate_hf
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Model;
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
            ("sgemm_fp32_v1", () => MatMulKernels.MatMulV1(device, a.View, false, b.View, false, c.View, 1, n, n, n, sharedB: true, accumulate: false)),
        };
        foreach (var (fig, launch) in versions)
        {
            double flops = 2.0 * n * n * n / Time(device, reps, launch);
            yield return new() { ["fig"] = fig, ["n"] = n, ["gflops"] = Math.Round(flops / 1e9, 1), ["tflops"] = Math.Round(flops / 1e12, 2) };
        }
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
                if (TensorCoreGemmKernels.CompiledAttributes(device, pipelined) is var (registers, localBytes))
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
        var ops = new (string Name, int FloatsMoved, Action Launch)[]
        {
            ("add", 3, () => ElementwiseKernels.Add(device, a.View, b.View, y.View)),
            ("scale", 2, () => ElementwiseKernels.Scale(device, a.View, 0.5f, y.View)),
            ("exp", 2, () => ElementwiseKernels.Exp(device, a.View, y.View)),
        };
        foreach (var (name, floatsMoved, launch) in ops)
        {
            double seconds = Time(device, reps, launch);
            yield return new() { ["fig"] = "elementwise", ["op"] = name, ["n"] = n, ["gbps"] = Math.Round((double)floatsMoved * n * sizeof(float) / seconds / 1e9, 1) };
        }
    }

    /// <summary>
    /// The model figures at torch_gpu_anchor.py's shapes, same names: train_step_fp32 (forward, cross-entropy,
    /// backward, AdamW; 64 x 128 tokens small, 64 x 512 mid) and generate (64 prompts of 32 random
    /// tokens, 96 new at temperature 1, the anchor's generate_hf).
    /// </summary>
    public static IEnumerable<Dictionary<string, object>> Model(Device device, bool mid)
    {
        var config = mid ? TransformerConfig.GpuMid : TransformerConfig.GpuSmall;
        string shape = mid ? "mid" : "small";
        var step = BenchCommand.TrainStep(device, config, "train_step_fp32", 64, mid ? 512 : 128, mid ? 5 : 20);
        step["shape"] = shape;
        yield return step;
        var generate = BenchCommand.Generate(device, config, "generate", 64, 32, 96, 3);
        generate["shape"] = shape;
        yield return generate;
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
