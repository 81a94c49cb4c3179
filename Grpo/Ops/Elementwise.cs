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
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor Add(Tensor a, Tensor b) => OnGpu("Add", a, b) ? BinaryOnDevice(a, b, "Add", multiply: false) : Binary(a, b, "Add",
        (x, y, z) => TensorPrimitives.Add(x, y, z),
        (dy, x, y, dx) => TensorPrimitives.Add(dx, dy, dx),
        (dy, x, y, dyb) => TensorPrimitives.Add(dyb, dy, dyb));

    public static Tensor Sub(Tensor a, Tensor b) => OnGpu("Sub", a, b) ? SubOnDevice(a, b) : Binary(a, b, "Sub",
        (x, y, z) => TensorPrimitives.Subtract(x, y, z),
        (dy, x, y, dx) => TensorPrimitives.Add(dx, dy, dx),
        (dy, x, y, dyb) => TensorPrimitives.Subtract(dyb, dy, dyb));

    public static Tensor Mul(Tensor a, Tensor b) => OnGpu("Mul", a, b) ? BinaryOnDevice(a, b, "Mul", multiply: true) : Binary(a, b, "Mul",
        (x, y, z) => TensorPrimitives.Multiply(x, y, z),
        (dy, x, y, dx) => TensorPrimitives.MultiplyAdd(dy, y, dx, dx),
        (dy, x, y, dyb) => TensorPrimitives.MultiplyAdd(dy, x, dyb, dyb));

    public static Tensor Scale(Tensor a, float s)
    {
        if (OnGpu("Scale", a)) return UnaryOnDevice(a, (d, x, y) => ElementwiseKernels.Scale(d, x, s, y), (d, dy, y, into) => ElementwiseKernels.Scale(d, dy, s, into));
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
        if (OnGpu("Exp", a)) return UnaryOnDevice(a, ElementwiseKernels.Exp, (d, dy, y, into) => ElementwiseKernels.Mul(d, dy, y, into));
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
        if (OnGpu("Log", a))
        {
            var logOnDevice = Tensor.Empty(a.Device, a.Shape);
            ElementwiseKernels.Log(a.Device, a.View, logOnDevice.View);
            Autograd.Record(logOnDevice, [a], () => ElementwiseKernels.LogBackward(a.Device, a.View, logOnDevice.GradView(), a.GradView()));
            return logOnDevice;
        }
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
        RequireHost(name, a, b);
        CheckSuffix(a, b, name);
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

    private static void CheckSuffix(Tensor a, Tensor b, string name)
    {
        bool suffix = b.Rank <= a.Rank && a.Shape.AsSpan(a.Rank - b.Rank).SequenceEqual(b.Shape);
        if (!suffix) throw new ArgumentException($"{name}: shape {ShapeText(b)} is neither {ShapeText(a)} nor a suffix of it");
    }

    // The GPU path (Compute/Kernels/ElementwiseKernels.cs): the same equations, a kernel each; a
    // gradient term is formed in a pooled buffer and added in, and a repeated b (a bias) gets the sum
    // of its repeats (ReduceKernels).
    private static Tensor BinaryOnDevice(Tensor a, Tensor b, string name, bool multiply)
    {
        CheckSuffix(a, b, name);
        var device = a.Device;
        var y = Tensor.Empty(device, a.Shape);
        if (multiply) ElementwiseKernels.Mul(device, a.View, b.View, y.View);
        else ElementwiseKernels.Add(device, a.View, b.View, y.View);
        Autograd.Record(y, [a, b], () =>
        {
            var dy = y.GradView();
            if (a.RequiresGrad)
            {
                if (!multiply) ElementwiseKernels.Add(device, a.GradView(), dy, a.GradView());          // da += dy
                else
                {
                    using var term = device.Pool.Rent<float>(a.Size);
                    ElementwiseKernels.Mul(device, dy, b.View, term.View);                              // da += dy * b
                    ElementwiseKernels.Add(device, a.GradView(), term.View, a.GradView());
                }
            }
            if (b.RequiresGrad)
            {
                using var product = multiply ? device.Pool.Rent<float>(a.Size) : null;
                if (product != null) ElementwiseKernels.Mul(device, dy, a.View, product.View);         // db += dy * a
                ArrayView<float> term = product != null ? product.View : dy;
                if (b.Size == a.Size) ElementwiseKernels.Add(device, b.GradView(), term, b.GradView());
                else
                {
                    using var sum = device.Pool.Rent<float>(b.Size);                                    // summed over b's repeats
                    ReduceKernels.Forward(device, term, sum.View, 1, a.Size / b.Size, b.Size, 1f);
                    ElementwiseKernels.Add(device, b.GradView(), sum.View, b.GradView());
                }
            }
        });
        return y;
    }

    /// <summary>a - b on the GPU: a + (-1) b, and the backward da += dy, db -= dy summed over b's repeats.</summary>
    private static Tensor SubOnDevice(Tensor a, Tensor b)
    {
        CheckSuffix(a, b, "Sub");
        var device = a.Device;
        var y = Tensor.Empty(device, a.Shape);
        using (var negated = device.Pool.Rent<float>(b.Size))
        {
            ElementwiseKernels.Scale(device, b.View, -1f, negated.View);
            ElementwiseKernels.Add(device, a.View, negated.View, y.View);
        }
        Autograd.Record(y, [a, b], () =>
        {
            var dy = y.GradView();
            if (a.RequiresGrad) ElementwiseKernels.Add(device, a.GradView(), dy, a.GradView());
            if (b.RequiresGrad)
            {
                using var sum = device.Pool.Rent<float>(b.Size);
                ReduceKernels.Forward(device, dy, sum.View, 1, a.Size / b.Size, b.Size, -1f);   // -(dy summed over b's repeats)
                ElementwiseKernels.Add(device, b.GradView(), sum.View, b.GradView());
            }
        });
        return y;
    }

    private delegate void DeviceUnary(Device device, ArrayView<float> x, ArrayView<float> y);
    private delegate void DeviceUnaryBackward(Device device, ArrayView<float> dy, ArrayView<float> y, ArrayView<float> into);

    private static Tensor UnaryOnDevice(Tensor a, DeviceUnary forward, DeviceUnaryBackward gradientTerm)
    {
        var device = a.Device;
        var y = Tensor.Empty(device, a.Shape);
        forward(device, a.View, y.View);
        Autograd.Record(y, [a], () =>
        {
            using var term = device.Pool.Rent<float>(a.Size);
            gradientTerm(device, y.GradView(), y.View, term.View);
            ElementwiseKernels.Add(device, a.GradView(), term.View, a.GradView());
        });
        return y;
    }
}
