// Ops: every differentiable operation, one file each, all members of the static class Op
// (so the model reads `Op.MatMul(x, w, transposeB: true)`, `Op.RmsNorm(x, weight)`, ...).
//
// Each file holds one op's forward and its backward side by side. The forward computes the output
// on the CPU (the readable reference) and calls Autograd.Record with a closure that, given
// output.Grad, adds the input gradients. Gradient checks for every op: Grpo.Tests/GradCheckTests.cs and Grpo.Tests/Ops/.
namespace Grpo.Ops;

public static partial class Op
{
    internal static void CheckSameShape(Tensor a, Tensor b, string op)
    {
        if (!a.Shape.AsSpan().SequenceEqual(b.Shape))
            throw new ArgumentException($"{op}: shapes [{string.Join(", ", a.Shape)}] and [{string.Join(", ", b.Shape)}] differ");
    }

    internal static string ShapeText(Tensor t) => $"[{string.Join(", ", t.Shape)}]";
}
