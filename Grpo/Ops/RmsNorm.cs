// RMSNorm (Zhang & Sennrich 2019), as Hugging Face Llama computes it: each row of x is divided by
// its root mean square, then scaled channel by channel by a learned weight.
//
//   r = 1 / sqrt(mean_j x_j^2 + eps)        y_j = (x_j * r) * w_j          x (..., C), w (C)
// Backward, per row, with g_j = dy_j * w_j:
//   dx_j = r * g_j - (r^3 / C) * x_j * sum_k g_k x_k
//   dw_j = sum over rows of dy_j * x_j * r
// Hand-worked: x = [3, 4], w = 1, eps = 0: r = 1 / sqrt((9 + 16) / 2) = 1 / 3.5355 -> y = [0.8485, 1.1314].
// Tests: Grpo.Tests/Ops/OpsATests.cs.
using System.Numerics.Tensors;
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor RmsNorm(Tensor x, Tensor weight, float eps)
    {
        int channels = x.Rank == 0 ? 0 : x.Dim(-1);
        if (weight.Rank != 1 || weight.Size != channels)
            throw new ArgumentException($"RmsNorm: weight {ShapeText(weight)} must be ({channels}) for x {ShapeText(x)}");
        int rows = channels == 0 ? 0 : x.Size / channels;
        if (OnGpu("RmsNorm", x, weight)) return RmsNormOnDevice(x, weight, eps, rows, channels);
        var inverseRms = new float[rows]; // r per row, kept for the backward
        var y = new Tensor(new float[x.Size], x.Shape);

        ForBlocks(rows, channels, row =>
        {
            var xRow = x.Data.AsSpan(row * channels, channels);
            var yRow = y.Data.AsSpan(row * channels, channels);
            float meanSquare = TensorPrimitives.Dot<float>(xRow, xRow) / channels;
            inverseRms[row] = 1f / MathF.Sqrt(meanSquare + eps);
            TensorPrimitives.Multiply(xRow, inverseRms[row], yRow);
            TensorPrimitives.Multiply(yRow, weight.Data, yRow);
        });

        Autograd.Record(y, [x, weight], () =>
        {
            var dy = y.Grad!;
            var w = weight.Data;
            if (x.RequiresGrad)
            {
                var dx = x.GradOrCreate();
                ForBlocks(rows, channels, row =>
                {
                    var xRow = x.Data.AsSpan(row * channels, channels);
                    var dxRow = dx.AsSpan(row * channels, channels);
                    float r = inverseRms[row];
                    Span<float> g = channels <= 4096 ? stackalloc float[channels] : new float[channels];
                    TensorPrimitives.Multiply(dy.AsSpan(row * channels, channels), w, g);   // g = dy * w
                    float coefficient = r * r * r / channels * TensorPrimitives.Dot<float>(g, xRow);
                    TensorPrimitives.MultiplyAdd(g, r, dxRow, dxRow);                       // dx += r g
                    TensorPrimitives.MultiplyAdd(xRow, -coefficient, dxRow, dxRow);         // dx -= (r^3 / C) (g . x) x
                });
            }
            if (weight.RequiresGrad)
            {
                // Every row adds into the same dw, so this sum runs row after row.
                var dw = weight.GradOrCreate();
                var product = new float[channels];
                for (int row = 0; row < rows; row++)
                {
                    TensorPrimitives.Multiply(dy.AsSpan(row * channels, channels), x.Data.AsSpan(row * channels, channels), product);
                    TensorPrimitives.MultiplyAdd(product, inverseRms[row], dw, dw);         // dw += dy * x * r
                }
            }
        });
        return y;
    }

    /// <summary>The GPU path: one group of threads per row (Compute/Kernels/RmsNormKernels.cs).</summary>
    private static Tensor RmsNormOnDevice(Tensor x, Tensor weight, float eps, int rows, int channels)
    {
        var device = x.Device;
        var y = Tensor.Empty(device, x.Shape);
        var inverseRms = new DeviceArray(device, rows);
        RmsNormKernels.Forward(device, x.View, weight.View, y.View, inverseRms.View, rows, channels, eps);
        Autograd.Record(y, [x, weight], () =>
        {
            RmsNormKernels.Backward(device, x.View, weight.View, inverseRms.View, y.GradView(),
                x.RequiresGrad ? x.GradView() : default, weight.RequiresGrad ? weight.GradView() : default, rows, channels);
            inverseRms.Release();
        });
        if (!y.RequiresGrad) inverseRms.Release();   // no backward will read it
        return y;
    }
}
