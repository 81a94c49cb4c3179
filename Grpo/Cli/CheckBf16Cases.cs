// The bf16 matmul's part of `grpo check --precision bf16`: a linear layer's three products (y = x W^T,
// dx = dy W, dW = dy^T x) through Op.MatMul with MatMulPrecision.Bf16, the tensors on the device (the
// tensor-core GEMM on CUDA, Compute/Kernels/Bf16MatMulKernels.cs) against the CPU bf16 spec (Ops/MatMul.cs).
// Both sides round the same fp32 values to the same bf16 operands, so only the order of the fp32 sums
// differs: judged against the tensor's scale at 1e-4, as the fp32 matmul is. (bf16 against fp32 differs
// by ~3e-3 of the scale, so a path that skipped the rounding, or rounded differently, would fail.)
// Shapes: realistic = the mid preset's FFN (8 x 512 tokens, 768 -> 2048), its down projection, its LM head
// (1024 tokens, 768 -> 32000) and odd sizes that cross every tile edge; small = the CPU accelerator's.
// The whole model in bf16 is CheckModelCases with MatMulPrecision.Bf16.
using Grpo.Compute;
using Grpo.Ops;
using Grpo.Sampling;

namespace Grpo.Cli;

internal static class CheckBf16Cases
{
    public static IEnumerable<CheckCommand.Case> Cases(Rng rng, bool small)
    {
        (int Rows, int In, int Out)[] shapes = small
            ? [(96, 32, 48), (130, 20, 129)]
            : [(8 * 512, 768, 2048), (8 * 512, 2048, 768), (1024, 768, 32000), (1000, 999, 1001)];
        foreach (var (rows, width, outputs) in shapes)
            foreach (var check in Linear(rng, rows, width, outputs))
                yield return check;
    }

    /// <summary>y = x W^T, then the backward of sum(y * dy): its y, dx and dW on each side.</summary>
    private static IEnumerable<CheckCommand.Case> Linear(Rng rng, int rows, int width, int outputs)
    {
        var x = CheckCommand.RandomTensor(rng, 1f, rows, width);
        var weight = CheckCommand.RandomTensor(rng, 0.05f, outputs, width);
        var dy = CheckCommand.RandomTensor(rng, 1f, rows, outputs);
        var reference = new Lazy<float[][]>(() => Run(Device.Cpu, x, weight, dy));
        var onDevice = new Dictionary<Device, float[][]>();
        float[][] Results(Device device)
        {
            if (!onDevice.TryGetValue(device, out var results)) onDevice[device] = results = Run(device, x, weight, dy);
            return results;
        }
        string shape = $"{rows}x{width} @ {outputs}x{width}^T";
        string[] what = ["linear y = x W^T", "linear dx = dy W", "linear dW = dy^T x"];
        for (int i = 0; i < what.Length; i++)
        {
            int index = i;
            yield return new CheckCommand.Case("bf16 matmul", what[i], shape, 1e-4, true,
                () => reference.Value[index], device => Results(device)[index], NeedsGrad: true);
        }
    }

    private static float[][] Run(Device device, Tensor x, Tensor weight, Tensor dy)
    {
        Tensor Leaf(Tensor t) => device.IsCpu
            ? Tensor.Parameter((float[])t.Data.Clone(), t.Shape)
            : new Tensor(DeviceArray.Upload(device, t.Data, scoped: false), t.Shape) { RequiresGrad = true };
        var xLeaf = Leaf(x);
        var weightLeaf = Leaf(weight);
        var y = Op.MatMul(xLeaf, weightLeaf, transposeB: true, precision: MatMulPrecision.Bf16);
        var values = y.ToArray();
        Autograd.Backward(y, dy.Data);
        return [values, xLeaf.GradToArray()!, weightLeaf.GradToArray()!];
    }
}
