// `grpo check`'s cases for the tensor-core GEMM (Compute/Kernels/TensorCoreGemmKernels.cs), run on CUDA only:
// its inline PTX does not run on ILGPU's CPU accelerator, so there `check` prints that they were skipped.
//
// The reference is the CPU's fp32 matmul (Grpo.Ops MatMul, the spec) on the same inputs first rounded
// to bf16 on the host (TensorCoreGemmKernels.ToBf16). A product of two bf16 numbers (8 significant bits
// each) is exact in fp32, so the two sides differ only in the order of the fp32 sums: judged like the
// fp32 matmuls, scaled, max |gpu - cpu| <= 1e-4 max |cpu|. A wrong fragment layout or swizzle gives
// errors of order 1. The device converts the unrounded floats itself (ToBf16Kernel), and the
// conversion is compared exactly with the host's on values that include ties and overflow.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;
using Grpo.Sampling;
using Case = Grpo.Cli.CheckCommand.Case;

namespace Grpo.Cli;

internal static class CheckTensorCoreCases
{
    public static IEnumerable<Case> Cases(Rng rng, bool small)
    {
        yield return Conversion(rng);
        yield return Gemm(rng, "bf16 A @ Bt^T, v2 (cp.async pipeline)", 512, 256, 384, pipelined: true);
        yield return Gemm(rng, "bf16 A @ Bt^T, v1 (synchronous copies)", 512, 256, 384, pipelined: false);
        if (small) yield break;
        yield return Gemm(rng, "linear x @ W^T (small preset), v2", 64 * 128, 256, 768, pipelined: true);
        yield return Gemm(rng, "square bf16 gemm, v2", 2048, 2048, 2048, pipelined: true);
        yield return Gemm(rng, "square bf16 gemm, v1", 2048, 2048, 2048, pipelined: false);
    }

    /// <summary>C (m, n) = A (m, k) @ Bt (n, k)^T on the device vs the CPU on the bf16-rounded inputs.</summary>
    private static Case Gemm(Rng rng, string what, int m, int k, int n, bool pipelined)
    {
        var a = CheckCommand.RandomTensor(rng, 1f, m, k);
        var bt = CheckCommand.RandomTensor(rng, 1f, n, k);
        return new Case("tc_gemm", what, $"{m}x{k} @ ({n}x{k})^T", 1e-4, true,
            () => Op.MatMul(Rounded(a), Rounded(bt), transposeA: false, transposeB: true).Data,
            device =>
            {
                using var aDevice = Upload(device, a.Data);
                using var btDevice = Upload(device, bt.Data);
                using var a16 = device.Pool.Rent<ushort>(a.Size);
                using var bt16 = device.Pool.Rent<ushort>(bt.Size);
                using var c = device.Pool.Rent<float>((long)m * n);
                TensorCoreGemmKernels.ToBf16(device, aDevice.View, a16.View);
                TensorCoreGemmKernels.ToBf16(device, btDevice.View, bt16.View);
                TensorCoreGemmKernels.Gemm(device, a16.View, bt16.View, c.View, m, n, k, pipelined);
                var result = new float[m * n];
                c.Download(result);
                return result;
            });
    }

    /// <summary>The device's fp32 -> bf16 against the host's, exactly, as the floats the patterns stand for.</summary>
    private static Case Conversion(Rng rng)
    {
        // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties to even, 1. 1 + 3 2^-8: up to 1 + 2^-6.
        // float.MaxValue rounds past bf16's largest finite, to infinity.
        float[] special = [1f, -1f, 0f, -0f, 1f + 1f / 256, 1f + 3f / 256, float.MaxValue, float.PositiveInfinity,
            float.NegativeInfinity, float.Epsilon, 1e-40f, 3.14159265f];
        var values = special.Concat(Enumerable.Range(0, 1 << 16).Select(_ => (2 * rng.NextFloat() - 1) * 1000f)).ToArray();
        return new Case("to_bf16", "fp32 -> bf16, nearest even (exact)", $"({values.Length})", 0, false,
            () => values.Select(v => TensorCoreGemmKernels.FromBf16(TensorCoreGemmKernels.ToBf16(v))).ToArray(),
            device =>
            {
                using var x = Upload(device, values);
                using var y = device.Pool.Rent<ushort>(values.Length);
                TensorCoreGemmKernels.ToBf16(device, x.View, y.View);
                var bits = new ushort[values.Length];
                y.Download(bits);
                return bits.Select(TensorCoreGemmKernels.FromBf16).ToArray();
            });
    }

    private static Tensor Rounded(Tensor x) =>
        new(x.Data.Select(v => TensorCoreGemmKernels.FromBf16(TensorCoreGemmKernels.ToBf16(v))).ToArray(), x.Shape.ToArray());

    private static PooledBuffer<float> Upload(Device device, float[] host)
    {
        var buffer = device.Pool.Rent<float>(host.Length);
        buffer.Upload(host);
        return buffer;
    }
}
