// Softmax and log-softmax along the last axis, each row on its own.
//
//   softmax:     y_i = e^(x_i - m) / sum_j e^(x_j - m)        with m = max_j x_j (so no e^x overflows)
//                dx_i = y_i * (dy_i - sum_j dy_j y_j)
//   log-softmax: y_i = x_i - lse,  lse = m + ln sum_j e^(x_j - m)
//                dx_i = dy_i - softmax_i * sum_j dy_j             (softmax_i = e^(y_i))
// Shapes: x (..., C) -> y (..., C). Hand-worked: softmax of [0, ln 3] is [1, 3] / 4 = [0.25, 0.75].
// A softmax row that is all -infinity (nothing allowed) gives zeros rather than NaN.
// SoftmaxRows holds the row helpers CrossEntropy and TokenLogProbs share. Tests: Grpo.Tests/Ops/OpsBTests.cs.
using System.Numerics.Tensors;
using Grpo.Compute.Kernels;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor Softmax(Tensor x)
    {
        int cols = SoftmaxRows.Width(x, "Softmax"), rows = x.Size / Math.Max(cols, 1);
        if (OnGpu("Softmax", x)) return SoftmaxOnDevice(x, rows, cols, log: false);
        var y = new Tensor(new float[x.Size], x.Shape);
        SoftmaxRows.For(rows, cols, 0, (r, _) =>
        {
            var xRow = x.Data.AsSpan(r * cols, cols);
            var yRow = y.Data.AsSpan(r * cols, cols);
            float max = TensorPrimitives.Max(xRow);
            if (float.IsNegativeInfinity(max)) { yRow.Clear(); return; }
            TensorPrimitives.Subtract(xRow, max, yRow);
            TensorPrimitives.Exp(yRow, yRow);
            TensorPrimitives.Multiply(yRow, 1f / TensorPrimitives.Sum(yRow), yRow);
        });
        Autograd.Record(y, [x], () =>
        {
            var dx = x.GradOrCreate();
            SoftmaxRows.For(rows, cols, cols, (r, scratch) =>
            {
                var yRow = y.Data.AsSpan(r * cols, cols);
                var dyRow = y.Grad!.AsSpan(r * cols, cols);
                float dot = TensorPrimitives.Dot(dyRow, yRow);
                // dx += y * (dy - dot)
                TensorPrimitives.Subtract(dyRow, dot, scratch);
                TensorPrimitives.MultiplyAdd(scratch, yRow, dx.AsSpan(r * cols, cols), dx.AsSpan(r * cols, cols));
            });
        });
        return y;
    }

    public static Tensor LogSoftmax(Tensor x)
    {
        int cols = SoftmaxRows.Width(x, "LogSoftmax"), rows = x.Size / Math.Max(cols, 1);
        if (OnGpu("LogSoftmax", x)) return SoftmaxOnDevice(x, rows, cols, log: true);
        var y = new Tensor(new float[x.Size], x.Shape);
        SoftmaxRows.For(rows, cols, 0, (r, _) =>
        {
            var yRow = y.Data.AsSpan(r * cols, cols);
            // y serves as the scratch for e^(x - m) before it receives x - lse.
            float lse = SoftmaxRows.LogSumExp(x.Data.AsSpan(r * cols, cols), yRow);
            TensorPrimitives.Subtract(x.Data.AsSpan(r * cols, cols), lse, yRow);
        });
        Autograd.Record(y, [x], () =>
        {
            var dx = x.GradOrCreate();
            SoftmaxRows.For(rows, cols, cols, (r, scratch) =>
            {
                var dyRow = y.Grad!.AsSpan(r * cols, cols);
                var dxRow = dx.AsSpan(r * cols, cols);
                float sum = TensorPrimitives.Sum(dyRow);
                TensorPrimitives.Exp(y.Data.AsSpan(r * cols, cols), scratch);
                TensorPrimitives.Add(dxRow, dyRow, dxRow);
                TensorPrimitives.MultiplyAdd(scratch, -sum, dxRow, dxRow);
            });
        });
        return y;
    }

    /// <summary>The GPU path of both: one group of threads per row (Compute/Kernels/SoftmaxKernels.cs).</summary>
    private static Tensor SoftmaxOnDevice(Tensor x, int rows, int cols, bool log)
    {
        var device = x.Device;
        var y = Tensor.Empty(device, x.Shape);
        SoftmaxKernels.Forward(device, x.View, y.View, rows, cols, log);
        Autograd.Record(y, [x], () => SoftmaxKernels.Backward(device, y.View, y.GradView(), x.GradView(), rows, cols, log));
        return y;
    }
}

/// <summary>Row helpers shared by the softmax-shaped ops (Softmax, CrossEntropy, TokenLogProbs).</summary>
internal static class SoftmaxRows
{
    public delegate void RowBody(int row, Span<float> scratch);

    // Below this many values a parallel loop costs more than it saves.
    private const long ParallelThreshold = 1 << 15;

    /// <summary>Runs body for every row, in parallel when the work (about rows * workPerRow values)
    /// is large; each worker owns one scratch buffer of scratchLength.</summary>
    public static void For(int rows, long workPerRow, int scratchLength, RowBody body)
    {
        if (rows <= 1 || rows * workPerRow < ParallelThreshold)
        {
            var scratch = new float[scratchLength];
            for (int r = 0; r < rows; r++) body(r, scratch);
            return;
        }
        Parallel.For(0, rows, () => new float[scratchLength],
            (r, _, scratch) => { body(r, scratch); return scratch; }, _ => { });
    }

    /// <summary>ln sum_j e^(row_j), computed as m + ln sum_j e^(row_j - m); scratch (row's length) is overwritten.</summary>
    public static float LogSumExp(ReadOnlySpan<float> row, Span<float> scratch)
    {
        float max = TensorPrimitives.Max(row);
        if (float.IsNegativeInfinity(max)) return max;
        scratch = scratch[..row.Length];
        TensorPrimitives.Subtract(row, max, scratch);
        TensorPrimitives.Exp(scratch, scratch);
        return max + MathF.Log(TensorPrimitives.Sum(scratch));
    }

    /// <summary>The length of x's last axis, the softmax row.</summary>
    public static int Width(Tensor x, string op)
    {
        if (x.Rank < 1) throw new ArgumentException($"{op} needs rank >= 1, got {Op.ShapeText(x)}");
        return x.Dim(-1);
    }

    /// <summary>Throws when a target is outside [0, V), naming the value and its position.</summary>
    public static void CheckTargets(ReadOnlySpan<int> targets, int vocab, string op)
    {
        for (int i = 0; i < targets.Length; i++)
            if ((uint)targets[i] >= (uint)vocab)
                throw new ArgumentOutOfRangeException("targets", targets[i],
                    $"{op}: target {targets[i]} at position {i} is outside [0, {vocab})");
    }
}
