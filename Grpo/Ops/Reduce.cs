// Reductions: the sum or mean along one axis, and the sum or mean of every element.
//
// Along an axis, x is viewed as (outer, n, inner) with n the reduced axis; y is (outer, inner):
//   sum:  y[o, i] = sum_j x[o, j, i]          dx[o, j, i] = dy[o, i]
//   mean: y[o, i] = 1/n sum_j x[o, j, i]      dx[o, j, i] = dy[o, i] / n
// Over everything, y is a scalar (shape []): dx = dy (sum) or dy / size (mean).
// A negative axis counts from the end, as in PyTorch. A mean over zero elements is NaN, as there.
// Hand-worked: x = [[1, 2, 3], [4, 5, 6]]: sum over axis 0 = [5, 7, 9], mean over axis -1 = [2, 5],
// sum of all = 21, mean of all = 3.5. Tests: Grpo.Tests/Ops/OpsATests.cs.
// ForBlocks, at the end, is the parallel-over-rows loop that the other op files use too.
using System.Numerics.Tensors;
using Grpo.Compute.Kernels;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor Sum(Tensor x, int axis) => ReduceAlongAxis(x, axis, mean: false);

    public static Tensor Mean(Tensor x, int axis) => ReduceAlongAxis(x, axis, mean: true);

    public static Tensor SumAll(Tensor x) => ReduceAll(x, scale: 1f);

    public static Tensor MeanAll(Tensor x) => ReduceAll(x, scale: 1f / x.Size);

    private static Tensor ReduceAll(Tensor x, float scale)
    {
        if (OnGpu("SumAll/MeanAll", x)) return ReduceOnDevice(x, 1, x.Size, 1, scale, []);
        var y = Tensor.Scalar(TensorPrimitives.Sum<float>(x.Data) * scale);
        Autograd.Record(y, [x], () =>
        {
            var dx = x.GradOrCreate();
            TensorPrimitives.Add(dx, y.Grad![0] * scale, dx);
        });
        return y;
    }

    private static Tensor ReduceAlongAxis(Tensor x, int axis, bool mean)
    {
        int a = axis < 0 ? x.Rank + axis : axis;
        if (a < 0 || a >= x.Rank)
            throw new ArgumentOutOfRangeException(nameof(axis), $"axis {axis} is outside a tensor of shape {ShapeText(x)}");
        int n = x.Shape[a];
        int outer = Tensor.SizeOf(x.Shape.AsSpan(0, a)), inner = Tensor.SizeOf(x.Shape.AsSpan(a + 1));
        float scale = mean ? 1f / n : 1f;
        if (OnGpu("Sum/Mean", x)) return ReduceOnDevice(x, outer, n, inner, scale, [.. x.Shape[..a], .. x.Shape[(a + 1)..]]);
        var y = Tensor.Zeros([.. x.Shape[..a], .. x.Shape[(a + 1)..]]); // (outer, inner)

        // Each outer block writes its own slice of y, so blocks run in parallel when big enough.
        void ForwardBlock(int o)
        {
            var yBlock = y.Data.AsSpan(o * inner, inner);
            var xBlock = x.Data.AsSpan(o * n * inner, n * inner);
            if (inner == 1) yBlock[0] = TensorPrimitives.Sum<float>(xBlock);
            else
                for (int j = 0; j < n; j++)
                    TensorPrimitives.Add(yBlock, xBlock.Slice(j * inner, inner), yBlock);
            if (mean) TensorPrimitives.Multiply(yBlock, scale, yBlock);
        }
        ForBlocks(outer, n * inner, ForwardBlock);

        Autograd.Record(y, [x], () =>
        {
            var dy = y.Grad!;
            var dx = x.GradOrCreate();
            void BackwardBlock(int o)
            {
                var dyBlock = dy.AsSpan(o * inner, inner);
                var dxBlock = dx.AsSpan(o * n * inner, n * inner);
                if (inner == 1) { TensorPrimitives.Add(dxBlock, dyBlock[0] * scale, dxBlock); return; }
                for (int j = 0; j < n; j++)
                {
                    var dxRow = dxBlock.Slice(j * inner, inner);
                    TensorPrimitives.MultiplyAdd(dyBlock, scale, dxRow, dxRow);
                }
            }
            ForBlocks(outer, n * inner, BackwardBlock);
        });
        return y;
    }

    /// <summary>Runs body(0..count-1), in parallel only when there is enough work to pay for the threads.</summary>
    internal static void ForBlocks(int count, long workPerBlock, Action<int> body)
    {
        if (count > 1 && count * workPerBlock >= 1 << 15) Parallel.For(0, count, body);
        else for (int i = 0; i < count; i++) body(i);
    }

    /// <summary>The GPU path: y (outer, inner) = scale * sum over the middle axis of x (outer, n, inner), and
    /// its backward dx += scale * dy repeated (Compute/Kernels/ReduceKernels.cs).</summary>
    private static Tensor ReduceOnDevice(Tensor x, int outer, int n, int inner, float scale, int[] shape)
    {
        var device = x.Device;
        var y = Tensor.Empty(device, shape);
        ReduceKernels.Forward(device, x.View, y.View, outer, n, inner, scale);
        Autograd.Record(y, [x], () => ReduceKernels.Backward(device, y.GradView(), x.GradView(), outer, n, inner, scale));
        return y;
    }
}
