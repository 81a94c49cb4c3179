// Element-wise ops: add, sub, mul (with b the same shape as a, or a suffix of it, repeated over
// a's leading axes, as a bias or a norm weight is), scale by a constant, exp and log.
//
//   add: y = a + b    da = dy          db = dy (summed over the repeats)
//   sub: y = a - b    da = dy          db = -dy
//   mul: y = a * b    da = dy * b      db = dy * a
//   scale: y = s * a  da = s * dy
//   exp: y = e^a      da = dy * y
//   log: y = ln a     da = dy / a
// Hand-worked: exp(ln 2) = 2 and its derivative there is 2; log'(4) = 0.25.
// The CUDA port of add is Compute/Kernels/ElementwiseKernels.cs. Tests: GradCheckTests.
using System.Numerics.Tensors;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor Add(Tensor a, Tensor b) => Binary(a, b, "Add",
        (x, y, z) => TensorPrimitives.Add(x, y, z),
        (dy, x, y, dx) => TensorPrimitives.Add(dx, dy, dx),
        (dy, x, y, dyb) => TensorPrimitives.Add(dyb, dy, dyb));

    public static Tensor Sub(Tensor a, Tensor b) => Binary(a, b, "Sub",
        (x, y, z) => TensorPrimitives.Subtract(x, y, z),
        (dy, x, y, dx) => TensorPrimitives.Add(dx, dy, dx),
        (dy, x, y, dyb) => TensorPrimitives.Subtract(dyb, dy, dyb));

    public static Tensor Mul(Tensor a, Tensor b) => Binary(a, b, "Mul",
        (x, y, z) => TensorPrimitives.Multiply(x, y, z),
        (dy, x, y, dx) => TensorPrimitives.MultiplyAdd(dy, y, dx, dx),
        (dy, x, y, dyb) => TensorPrimitives.MultiplyAdd(dy, x, dyb, dyb));

    public static Tensor Scale(Tensor a, float s)
    {
        var y = new Tensor(new float[a.Size], a.Shape);
        TensorPrimitives.Multiply(a.Data, s, y.Data);
        Autograd.Record(y, [a], () =>
        {
            var da = a.GradOrCreate();
            TensorPrimitives.MultiplyAdd(y.Grad!, s, da, da);
        });
        return y;
    }

    public static Tensor Exp(Tensor a)
    {
        var y = new Tensor(new float[a.Size], a.Shape);
        TensorPrimitives.Exp(a.Data, y.Data);
        Autograd.Record(y, [a], () =>
        {
            var da = a.GradOrCreate();
            TensorPrimitives.MultiplyAdd(y.Grad!, y.Data, da, da);
        });
        return y;
    }

    public static Tensor Log(Tensor a)
    {
        var y = new Tensor(new float[a.Size], a.Shape);
        TensorPrimitives.Log(a.Data, y.Data);
        Autograd.Record(y, [a], () =>
        {
            var da = a.GradOrCreate();
            for (int i = 0; i < da.Length; i++) da[i] += y.Grad![i] / a.Data[i];
        });
        return y;
    }

    private delegate void Forward(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y);
    private delegate void BackwardInto(ReadOnlySpan<float> dy, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> grad);

    /// <summary>Applies a binary op chunk by chunk: b (of size s) repeats over a in chunks of s.</summary>
    private static Tensor Binary(Tensor a, Tensor b, string name, Forward forward, BackwardInto backA, BackwardInto backB)
    {
        int chunk = b.Size;
        bool suffix = b.Rank <= a.Rank && a.Shape.AsSpan(a.Rank - b.Rank).SequenceEqual(b.Shape);
        if (!suffix) throw new ArgumentException($"{name}: shape {ShapeText(b)} is neither {ShapeText(a)} nor a suffix of it");
        var y = new Tensor(new float[a.Size], a.Shape);
        for (int start = 0; start < a.Size; start += chunk)
            forward(a.Data.AsSpan(start, chunk), b.Data, y.Data.AsSpan(start, chunk));
        Autograd.Record(y, [a, b], () =>
        {
            var dy = y.Grad!;
            for (int start = 0; start < a.Size; start += chunk)
            {
                var dyChunk = dy.AsSpan(start, chunk);
                var aChunk = a.Data.AsSpan(start, chunk);
                if (a.RequiresGrad) backA(dyChunk, aChunk, b.Data, a.GradOrCreate().AsSpan(start, chunk));
                if (b.RequiresGrad) backB(dyChunk, aChunk, b.Data, b.GradOrCreate());
            }
        });
        return y;
    }
}
