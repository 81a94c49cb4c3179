// Ops: every differentiable operation, one file each, all members of the static class Op
// (so the model reads `Op.MatMul(x, w, transposeB: true)`, `Op.RmsNorm(x, weight)`, ...).
//
// Each file holds one op's forward and its backward side by side. The forward computes the output
// on the CPU (the readable reference) and calls Autograd.Record with a closure that, given
// output.Grad, adds the input gradients. Tensors on a GPU take the op's device path, in the same
// file: the same forward and backward through the op's kernels (Compute/Kernels/), on device views. Gradient checks for every op: Grpo.Tests/GradCheckTests.cs and Grpo.Tests/Ops/.
namespace Grpo.Ops;

public static partial class Op
{
    internal static void CheckSameShape(Tensor a, Tensor b, string op)
    {
        if (!a.Shape.AsSpan().SequenceEqual(b.Shape))
            throw new ArgumentException($"{op}: shapes [{string.Join(", ", a.Shape)}] and [{string.Join(", ", b.Shape)}] differ");
    }

    internal static string ShapeText(Tensor t) => $"[{string.Join(", ", t.Shape)}]";

    /// <summary>True when the tensors live on a GPU (all on the same one), false when all are on the host.</summary>
    internal static bool OnGpu(string op, params Tensor[] tensors)
    {
        var device = tensors[0].Device;
        foreach (var t in tensors)
            if (t.Device != device)
                throw new ArgumentException($"{op}: tensors on different devices ({device.Kind} and {t.Device.Kind}); move one with To(device)");
        return !device.IsCpu;
    }

    /// <summary>For ops whose GPU port is not wired in: says so (the caller can move the tensor with To(Device.Cpu)).</summary>
    internal static void RequireHost(string op, params Tensor[] tensors)
    {
        if (OnGpu(op, tensors))
            throw new NotSupportedException($"{op} runs on the CPU only; move its inputs there with To(Device.Cpu)");
    }
}
