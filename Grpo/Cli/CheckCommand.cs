// `grpo check [--device cuda|cpu-accelerator] [--sizes realistic|small] [--seed N] [--precision fp32|bf16]`: every ported
// kernel run on the device and compared with the CPU reference (Grpo.Ops, the spec), llm.c style:
// one line per output tensor with its max abs difference, that difference relative to the tensor's
// largest value, the tolerance, and OK or NOT OK. Exit code 1 if anything is NOT OK, or when the
// device is not there (said in one line).
//
// Tolerances. A matmul output is a sum of K products whose rounding differs between the CPU (SIMD
// blocks of K) and the GPU (one running sum per thread): its error grows with K and is judged
// against the tensor's scale ("s"): OK when max |gpu - cpu| <= 1e-4 max |cpu| (fp32 gives ~1e-6 here;
// TF32 or a wrong tile would give 1e-3 or worse). An element-wise output is judged element by element
// ("e"): |gpu - cpu| <= 1e-5 |cpu| + 1e-6 (add, mul, scale are exact; exp is ex2.approx on the GPU).
// The op kernels' tolerances are explained in CheckOpCases.cs.
// Sizes: realistic = the small preset's training shapes (width 256, FFN 768, 4 heads of 64, batch
// 64 x 128 tokens) plus the mid preset's LM head (width 768, vocab 32000) and edge-crossing odd sizes;
// small = shapes ILGPU's CPU accelerator runs in seconds (the default for cpu-accelerator).
// The ops' kernels (forward and backward), AdamW, the sampler and the GRPO loss are in CheckOpCases.cs;
// a whole training step, GRPO step and sampling of the small model in CheckModelCases.cs; the bf16
// tensor-core GEMM (CUDA only: skipped elsewhere) in CheckTensorCoreCases.cs, last, because a fault in
// its inline PTX would spoil the CUDA context for every case after it. --precision bf16 runs instead the
// bf16 matmul (CheckBf16Cases.cs) and the training and GRPO steps with the model in bf16 (CheckModelCases.cs),
// each against the CPU bf16 spec.
using System.CommandLine;
using System.Diagnostics;
using Grpo.Compute;
using Grpo.Ops;
using Grpo.Sampling;

namespace Grpo.Cli;

public static class CheckCommand
{
    /// <summary>One compared tensor. Scaled: OK when max |diff| <= Tolerance * max |reference|; else element-wise:
    /// every |diff| <= Tolerance * |reference| + 1e-6. NeedsGrad: the reference runs a backward (outside NoGrad).</summary>
    internal sealed record Case(string Kernel, string What, string Shape, double Tolerance, bool Scaled, Func<float[]> Reference,
        Func<Device, float[]> OnDevice, bool NeedsGrad = false);

    public static Command Create()
    {
        var device = DeviceOption.Create("cuda", "cpu-accelerator");
        var sizes = new Option<string>("--sizes") { Description = "realistic|small (default: realistic on cuda, small on cpu-accelerator)" };
        var seed = new Option<ulong>("--seed") { Description = "seed of the random inputs", DefaultValueFactory = _ => 1UL };
        var precision = PrecisionOption.Create();
        var command = new Command("check", "Run every GPU kernel against the CPU reference and print max abs/rel error, OK or NOT OK")
            { device, sizes, seed, precision };
        command.SetAction(parse =>
        {
            string deviceName = parse.GetValue(device)!;
            string? sizeName = parse.GetValue(sizes);
            if (sizeName is not (null or "realistic" or "small"))
            {
                Console.Error.WriteLine($"error: --sizes must be realistic or small, not '{sizeName}'");
                return 1;
            }
            if (!PrecisionOption.TryParse(parse.GetValue(precision)!, out var matMulPrecision, out var precisionError))
            {
                parse.InvocationConfiguration.Error.WriteLine($"error: {precisionError}");
                return 1;
            }
            using var opened = DeviceOption.Open(deviceName);
            if (opened == null) return 1;
            if (opened.IsCpu)
            {
                Console.Error.WriteLine(deviceName.Trim().ToLowerInvariant() == "cpu"
                    ? "error: check compares GPU kernels with the CPU reference; --device cpu has no kernels to compare (use cuda or cpu-accelerator)"
                    : "error: check compares GPU kernels with the CPU reference, and no CUDA device was found " +
                      "(--device cpu-accelerator runs the kernels on ILGPU's CPU accelerator instead)");
                return 1;
            }
            bool small = sizeName == "small" || (sizeName == null && opened.Kind == DeviceKind.CpuAccelerator);
            return Run(opened, small, parse.GetValue(seed), matMulPrecision);
        });
        return command;
    }

    /// <summary>Runs every case and prints its line; returns 0 when all are OK, else 1.</summary>
    public static int Run(Device device, bool small, ulong seed, MatMulPrecision precision = MatMulPrecision.Fp32)
    {
        Console.WriteLine($"device: {device.Description}");
        Console.WriteLine($"reference: CPU ({Environment.ProcessorCount} threads), sizes: {(small ? "small" : "realistic")}, seed {seed}, precision {precision.ToString().ToLowerInvariant()}");
        Console.WriteLine("rel = max abs / max |reference|; scaled (s) OK when rel <= tol, element-wise (e) OK when every |diff| <= tol |ref| + 1e-6");
        Console.WriteLine($"{"kernel",-12} {"what",-40} {"shape",-34} {"max abs",10} {"rel",10} {"tol",9}  result");
        var watch = Stopwatch.StartNew();
        int ok = 0, notOk = 0;
        // The tensor-core GEMM is inline PTX: it runs on CUDA only, so elsewhere its cases are not run at all.
        bool cuda = device.Kind == DeviceKind.Cuda;
        IEnumerable<Case> cases;
        if (precision == MatMulPrecision.Bf16)
        {
            if (!cuda) Console.WriteLine("bf16 matmul: the plain bf16 GEMM stands in for the tensor cores (inline PTX runs only on CUDA)");
            cases = CheckBf16Cases.Cases(new Rng(seed + 4), small).Concat(CheckModelCases.Cases(new Rng(seed + 2), small, precision));
        }
        else
        {
            if (!cuda) Console.WriteLine("tc_gemm, to_bf16: skipped (inline PTX runs only on CUDA)");
            var tensorCore = cuda ? CheckTensorCoreCases.Cases(new Rng(seed + 3), small) : [];
            cases = Cases(new Rng(seed), small).Concat(CheckOpCases.Cases(new Rng(seed + 1), small))
                .Concat(CheckModelCases.Cases(new Rng(seed + 2), small)).Concat(tensorCore);
        }
        foreach (var check in cases)
        {
            string verdict;
            double maxAbs = double.NaN, relative = double.NaN;
            try
            {
                float[] expected;
                using (check.NeedsGrad ? null : Autograd.NoGrad()) expected = check.Reference();
                var actual = check.OnDevice(device);
                bool pass = Compare(expected, actual, check.Tolerance, check.Scaled, out maxAbs, out relative);
                verdict = pass ? "OK" : "NOT OK";
                if (pass) ok++; else notOk++;
            }
            catch (Exception error)
            {
                notOk++;
                verdict = $"NOT OK ({error.GetType().Name}: {DeviceOption.FirstLine(error.Message)})";
            }
            string tolerance = $"{check.Tolerance:0e+00} {(check.Scaled ? "s" : "e")}";
            Console.WriteLine($"{check.Kernel,-12} {check.What,-40} {check.Shape,-34} {maxAbs,10:0.00e+00} {relative,10:0.00e+00} {tolerance,9}  {verdict}");
        }
        Console.WriteLine($"{ok} OK, {notOk} NOT OK, {device.Kernels.Count} kernels compiled, {watch.Elapsed.TotalSeconds:F1} s");
        return notOk == 0 ? 0 : 1;
    }

    /// <summary>
    /// maxAbs = max |actual - expected|; relative = maxAbs / max |expected|. A scaled comparison passes
    /// when relative <= tolerance; an element-wise one when every element is within tolerance |expected| + 1e-6.
    /// A difference that is NaN or infinite fails (equal infinities, as a log-softmax of -inf gives, agree).
    /// </summary>
    private static bool Compare(float[] expected, float[] actual, double tolerance, bool scaled, out double maxAbs, out double relative)
    {
        maxAbs = 0; relative = 0;
        if (expected.Length != actual.Length) { maxAbs = relative = double.PositiveInfinity; return false; }
        double maxRef = 0;
        bool each = true;
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] == actual[i]) continue;
            double diff = Math.Abs((double)actual[i] - expected[i]);
            if (!double.IsFinite(diff)) diff = double.PositiveInfinity;
            maxAbs = Math.Max(maxAbs, diff);
            if (!(diff <= tolerance * Math.Abs(expected[i]) + 1e-6)) each = false;
        }
        for (int i = 0; i < expected.Length; i++)
            if (float.IsFinite(expected[i])) maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        relative = maxRef == 0 ? maxAbs : maxAbs / maxRef;
        return scaled ? relative <= tolerance : each;
    }

    private static IEnumerable<Case> Cases(Rng rng, bool small)
    {
        // (rows of tokens, width, FFN, heads x batch, sequence, head size, mid width, mid vocab, mid rows)
        var (tokens, width, ffn, batchHeads, seq, head, midWidth, vocab, midRows) = small
            ? (96, 32, 48, 4, 24, 16, 48, 200, 24)
            : (64 * 128, 256, 768, 64 * 4, 128, 64, 768, 32000, 1024);

        yield return MatMul(rng, "linear forward x @ W^T", 1, tokens, width, ffn, false, true, sharedB: true, accumulate: false);
        yield return MatMul(rng, "linear backward dx += dy @ W", 1, tokens, ffn, width, false, false, sharedB: true, accumulate: true);
        yield return MatMul(rng, "linear backward dW += dy^T @ x", 1, ffn, tokens, width, true, false, sharedB: true, accumulate: true);
        yield return MatMul(rng, "LM head (mid) x @ E^T", 1, midRows, midWidth, vocab, false, true, sharedB: true, accumulate: false);
        yield return MatMul(rng, "decode x @ W^T (skinny kernel)", 1, small ? 9 : 64, width, ffn, false, true, sharedB: true, accumulate: false);
        yield return MatMul(rng, "weight grad dW += dy^T @ x (split-K)", 1, small ? 40 : 256, small ? 1100 : 8192, small ? 36 : 256, true, false, sharedB: true, accumulate: true);
        yield return MatMul(rng, "attention scores q @ k^T", batchHeads, seq, head, seq, false, true, sharedB: false, accumulate: false);
        yield return MatMul(rng, "attention output p @ v", batchHeads, seq, seq, head, false, false, sharedB: false, accumulate: false);
        yield return MatMul(rng, "attention backward dv = p^T @ do", batchHeads, seq, seq, head, true, false, sharedB: false, accumulate: false);
        yield return MatMul(rng, "shared W, A transposed, batched", 3, small ? 20 : 200, small ? 9 : 300, small ? 11 : 100, true, false, sharedB: true, accumulate: false);
        yield return MatMul(rng, "odd sizes, both transposed", 1, small ? 131 : 1000, small ? 13 : 999, small ? 129 : 1001, true, true, sharedB: true, accumulate: false);
        if (!small) yield return MatMul(rng, "square sgemm", 1, 2048, 2048, 2048, false, false, sharedB: true, accumulate: false);

        int size = tokens * ffn;
        var x = RandomTensor(rng, 1f, tokens, ffn);
        var y = RandomTensor(rng, 1f, tokens, ffn);
        var bias = RandomTensor(rng, 1f, ffn);
        var logits = RandomTensor(rng, 8f, tokens, ffn);
        string shape = $"({tokens}, {ffn})";
        yield return new Case("add", "x + y", shape, 1e-5, false, () => Op.Add(x, y).Data, d => Run(size, o => d.Add(x.Data, y.Data, o)));
        yield return new Case("add", "x + bias (broadcast)", $"{shape} + ({ffn})", 1e-5, false, () => Op.Add(x, bias).Data, d => Run(size, o => d.Add(x.Data, bias.Data, o)));
        yield return new Case("mul", "x * y (and dy * b in backward)", shape, 1e-5, false, () => Op.Mul(x, y).Data, d => Run(size, o => d.Mul(x.Data, y.Data, o)));
        yield return new Case("mul", "x * weight (broadcast)", $"{shape} * ({ffn})", 1e-5, false, () => Op.Mul(x, bias).Data, d => Run(size, o => d.Mul(x.Data, bias.Data, o)));
        yield return new Case("scale", "-0.125 x", shape, 1e-5, false, () => Op.Scale(x, -0.125f).Data, d => Run(size, o => d.Scale(x.Data, -0.125f, o)));
        yield return new Case("exp", "exp(x), x in [-8, 8]", shape, 1e-5, false, () => Op.Exp(logits).Data, d => Run(size, o => d.Exp(logits.Data, o)));
    }

    private static Case MatMul(Rng rng, string what, int batch, int m, int k, int n, bool transposeA, bool transposeB, bool sharedB, bool accumulate)
    {
        var a = RandomTensor(rng, 1f, transposeA ? [batch, k, m] : [batch, m, k]);
        int[] bShape = transposeB ? [n, k] : [k, n];
        var b = RandomTensor(rng, 1f, sharedB ? bShape : [batch, .. bShape]);
        var start = accumulate ? RandomTensor(rng, 1f, batch, m, n) : null;
        string shape = $"{(batch > 1 ? $"{batch} x " : "")}{m}x{k}{(transposeA ? "^T" : "")} @ {k}x{n}{(transposeB ? "^T" : "")}";
        return new Case("matmul", what, shape, 1e-4, true,
            () =>
            {
                var product = Op.MatMul(a, b, transposeA, transposeB);
                return start == null ? product.Data : Op.Add(product, start).Data;
            },
            device =>
            {
                var c = start == null ? new float[batch * m * n] : (float[])start.Data.Clone();
                device.MatMul(a.Data, transposeA, b.Data, transposeB, c, batch, m, k, n, accumulate);
                return c;
            });
    }

    private static float[] Run(int size, Action<float[]> fill)
    {
        var output = new float[size];
        fill(output);
        return output;
    }

    /// <summary>Uniform in [-scale, scale).</summary>
    internal static Tensor RandomTensor(Rng rng, float scale, params int[] shape)
    {
        var data = new float[shape.Aggregate(1, (p, d) => p * d)];
        for (int i = 0; i < data.Length; i++) data[i] = (2 * rng.NextFloat() - 1) * scale;
        return new Tensor(data, shape);
    }
}
