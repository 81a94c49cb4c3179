// SiLU (also called swish) and SwiGLU, the gated feed-forward of Llama (Shazeer 2020):
//   mlp(x) = down_proj( SwiGlu(gate_proj(x), up_proj(x)) ).
//
//   silu(x) = x * s(x), s = sigmoid          silu'(x) = s(x) * (1 + x * (1 - s(x)))
//   SwiGlu(gate, up) = silu(gate) * up        dgate = dy * up * silu'(gate)    dup = dy * silu(gate)
// Shapes: any; gate and up have the same shape, and so has the output.
// The sigmoid is recomputed in the backward rather than kept, so the op holds no extra activation;
// the backward runs as a few TensorPrimitives passes over L1-sized blocks (a scalar loop calling
// MathF.Exp twice per value cost several times the forward).
// Hand-worked: silu(0) = 0 * 0.5 = 0 and silu'(0) = 0.5 * (1 + 0) = 0.5;
// silu(1) = 1 / (1 + e^-1) = 0.7311, silu'(1) = 0.7311 * (1 + 0.2689) = 0.9277.
// Tests: Grpo.Tests/Ops/OpsATests.cs.
using System.Numerics.Tensors;
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;

namespace Grpo.Ops;

public static partial class Op
{
    /// <summary>Element-wise work is cut into chunks of this many values, run in parallel when big.</summary>
    private const int ElementChunk = 1 << 14;

    public static Tensor Silu(Tensor x)
    {
        if (OnGpu("Silu", x)) return SiluOnDevice(x);
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
                Span<float> sigmoid = stackalloc float[DerivativeBlock], derivative = stackalloc float[DerivativeBlock];
                for (int at = start; at < start + length; at += DerivativeBlock)
                {
                    int n = Math.Min(DerivativeBlock, start + length - at);
                    var xs = x.Data.AsSpan(at, n);
                    var dxs = dx.AsSpan(at, n);
                    TensorPrimitives.Sigmoid(xs, sigmoid[..n]);
                    SiluDerivative(xs, sigmoid[..n], derivative[..n]);
                    TensorPrimitives.MultiplyAdd(dy.AsSpan(at, n), derivative[..n], dxs, dxs);   // dx += dy silu'(x)
                }
            });
        });
        return y;
    }

    public static Tensor SwiGlu(Tensor gate, Tensor up)
    {
        CheckSameShape(gate, up, "SwiGlu");
        if (OnGpu("SwiGlu", gate, up)) return SwiGluOnDevice(gate, up);
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
                Span<float> sigmoid = stackalloc float[DerivativeBlock], factor = stackalloc float[DerivativeBlock];
                for (int at = start; at < start + length; at += DerivativeBlock)
                {
                    int n = Math.Min(DerivativeBlock, start + length - at);
                    var gates = gate.Data.AsSpan(at, n);
                    var dys = dy.AsSpan(at, n);
                    var s = sigmoid[..n];
                    var f = factor[..n];
                    TensorPrimitives.Sigmoid(gates, s);
                    if (dup != null)
                    {
                        TensorPrimitives.Multiply(gates, s, f);                                // silu(gate)
                        TensorPrimitives.MultiplyAdd(dys, f, dup.AsSpan(at, n), dup.AsSpan(at, n));
                    }
                    if (dgate != null)
                    {
                        SiluDerivative(gates, s, f);
                        TensorPrimitives.Multiply(f, up.Data.AsSpan(at, n), f);               // up silu'(gate)
                        TensorPrimitives.MultiplyAdd(dys, f, dgate.AsSpan(at, n), dgate.AsSpan(at, n));
                    }
                }
            });
        });
        return y;
    }

    /// <summary>The backward works through blocks this long, so its temporaries live on the stack and in L1.</summary>
    private const int DerivativeBlock = 512;

    /// <summary>derivative = silu'(x) = s (1 + x (1 - s)), given s = sigmoid(x); whole spans, SIMD.</summary>
    private static void SiluDerivative(ReadOnlySpan<float> x, ReadOnlySpan<float> sigmoid, Span<float> derivative)
    {
        TensorPrimitives.Subtract(1f, sigmoid, derivative);          // 1 - s
        TensorPrimitives.Multiply(x, derivative, derivative);         // x (1 - s)
        TensorPrimitives.Add(derivative, 1f, derivative);             // 1 + x (1 - s)
        TensorPrimitives.Multiply(derivative, sigmoid, derivative);   // s (1 + x (1 - s))
    }

    private static void ForElementChunks(int size, Action<int, int> body)
    {
        int chunks = (size + ElementChunk - 1) / ElementChunk;
        ForBlocks(chunks, ElementChunk, c => body(c * ElementChunk, Math.Min(ElementChunk, size - c * ElementChunk)));
    }

    /// <summary>The GPU paths: one thread per element (Compute/Kernels/SiluKernels.cs).</summary>
    private static Tensor SiluOnDevice(Tensor x)
    {
        var y = Tensor.Empty(x.Device, x.Shape);
        SiluKernels.Silu(x.Device, x.View, y.View);
        Autograd.Record(y, [x], () => SiluKernels.SiluBackward(x.Device, x.View, y.GradView(), x.GradView()));
        return y;
    }

    private static Tensor SwiGluOnDevice(Tensor gate, Tensor up)
    {
        var device = gate.Device;
        var y = Tensor.Empty(device, gate.Shape);
        SiluKernels.SwiGlu(device, gate.View, up.View, y.View);
        Autograd.Record(y, [gate, up], () => SiluKernels.SwiGluBackward(device, gate.View, up.View, y.GradView(),
            gate.RequiresGrad ? gate.GradView() : default, up.RequiresGrad ? up.GradView() : default));
        return y;
    }
}
