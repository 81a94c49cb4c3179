// SiLU (also called swish) and SwiGLU, the gated feed-forward of Llama (Shazeer 2020):
//   mlp(x) = down_proj( SwiGlu(gate_proj(x), up_proj(x)) ).
//
//   silu(x) = x * s(x), s = sigmoid          silu'(x) = s(x) * (1 + x * (1 - s(x)))
//   SwiGlu(gate, up) = silu(gate) * up        dgate = dy * up * silu'(gate)    dup = dy * silu(gate)
// Shapes: any; gate and up have the same shape, and so has the output.
// The sigmoid is recomputed in the backward rather than kept, so the op holds no extra activation.
// Hand-worked: silu(0) = 0 * 0.5 = 0 and silu'(0) = 0.5 * (1 + 0) = 0.5;
// silu(1) = 1 / (1 + e^-1) = 0.7311, silu'(1) = 0.7311 * (1 + 0.2689) = 0.9277.
// Tests: Grpo.Tests/Ops/OpsATests.cs.
using System.Numerics.Tensors;

namespace Grpo.Ops;

public static partial class Op
{
    /// <summary>Element-wise work is cut into chunks of this many values, run in parallel when big.</summary>
    private const int ElementChunk = 1 << 14;

    public static Tensor Silu(Tensor x)
    {
        var y = new Tensor(new float[x.Size], x.Shape);
        ForElementChunks(x.Size, (start, length) =>
        {
            var xs = x.Data.AsSpan(start, length);
            var ys = y.Data.AsSpan(start, length);
            TensorPrimitives.Sigmoid(xs, ys);
            TensorPrimitives.Multiply(xs, ys, ys);
        });

        Autograd.Record(y, [x], () =>
        {
            var dy = y.Grad!;
            var dx = x.GradOrCreate();
            ForElementChunks(x.Size, (start, length) =>
            {
                for (int i = start; i < start + length; i++) dx[i] += dy[i] * SiluDerivative(x.Data[i]);
            });
        });
        return y;
    }

    public static Tensor SwiGlu(Tensor gate, Tensor up)
    {
        CheckSameShape(gate, up, "SwiGlu");
        var y = new Tensor(new float[gate.Size], gate.Shape);
        ForElementChunks(gate.Size, (start, length) =>
        {
            var gates = gate.Data.AsSpan(start, length);
            var ys = y.Data.AsSpan(start, length);
            TensorPrimitives.Sigmoid(gates, ys);
            TensorPrimitives.Multiply(gates, ys, ys);
            TensorPrimitives.Multiply(ys, up.Data.AsSpan(start, length), ys);
        });

        Autograd.Record(y, [gate, up], () =>
        {
            var dy = y.Grad!;
            var dgate = gate.RequiresGrad ? gate.GradOrCreate() : null;
            var dup = up.RequiresGrad ? up.GradOrCreate() : null;
            ForElementChunks(gate.Size, (start, length) =>
            {
                for (int i = start; i < start + length; i++)
                {
                    float g = gate.Data[i];
                    if (dgate != null) dgate[i] += dy[i] * up.Data[i] * SiluDerivative(g);
                    if (dup != null) dup[i] += dy[i] * g / (1f + MathF.Exp(-g));
                }
            });
        });
        return y;
    }

    private static float SiluDerivative(float x)
    {
        float s = 1f / (1f + MathF.Exp(-x));
        return s * (1f + x * (1f - s));
    }

    private static void ForElementChunks(int size, Action<int, int> body)
    {
        int chunks = (size + ElementChunk - 1) / ElementChunk;
        ForBlocks(chunks, ElementChunk, c => body(c * ElementChunk, Math.Min(ElementChunk, size - c * ElementChunk)));
    }
}
