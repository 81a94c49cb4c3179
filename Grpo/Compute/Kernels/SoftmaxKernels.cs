// The CUDA port of Ops/Softmax.cs, one RowGroup per row of the last axis (C columns):
//   softmax:     y = e^(x - m) / sum e^(x - m), m the row max; a row all -infinity gives zeros
//                dx += y * (dy - sum_j dy_j y_j)
//   log-softmax: y = x - lse, lse = m + ln sum e^(x - m)
//                dx += dy - e^y * sum_j dy_j
// Three passes over a row (max, sum, write), each a strided loop plus a tree reduction (RowGroup).
// XMath.Exp / Log are ex2.approx / lg2.approx on the GPU: agreement with the CPU is ~1e-6 relative.
// Launchers take device views (a device-resident tensor calls them without host round trips);
// Host.* (upload, run, download) is for the tests and `grpo check`.
// Tests: Grpo.Tests/Compute/RowKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static class SoftmaxKernels
{
    public static void SoftmaxKernel(ArrayView<float> x, ArrayView<float> y, int cols)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        long start = (long)Grid.IdxX * cols;
        float max = float.NegativeInfinity;
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) max = XMath.Max(max, x[start + j]);
        max = RowGroup.Max(scratch, max);
        if (max == float.NegativeInfinity)
        {
            for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) y[start + j] = 0f;
            return;
        }
        float partial = 0f;
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads)
        {
            float e = XMath.Exp(x[start + j] - max);
            y[start + j] = e;
            partial += e;
        }
        float inverse = 1f / RowGroup.Sum(scratch, partial);
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) y[start + j] *= inverse;
    }

    public static void LogSoftmaxKernel(ArrayView<float> x, ArrayView<float> y, int cols)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        long start = (long)Grid.IdxX * cols;
        float lse = RowLogSumExp(scratch, x, start, cols);
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) y[start + j] = x[start + j] - lse;
    }

    public static void SoftmaxBackwardKernel(ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, int cols)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        long start = (long)Grid.IdxX * cols;
        float partial = 0f;
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) partial += dy[start + j] * y[start + j];
        float dot = RowGroup.Sum(scratch, partial);
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) dx[start + j] += (dy[start + j] - dot) * y[start + j];
    }

    public static void LogSoftmaxBackwardKernel(ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, int cols)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        long start = (long)Grid.IdxX * cols;
        float partial = 0f;
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) partial += dy[start + j];
        float sum = RowGroup.Sum(scratch, partial);
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) dx[start + j] += dy[start + j] - XMath.Exp(y[start + j]) * sum;
    }

    /// <summary>ln sum_j e^(x_j) of one row, as m + ln sum e^(x - m); -infinity for a row all -infinity.
    /// Every thread of the group gets it. Shared with the log-prob and sampler kernels.</summary>
    public static float RowLogSumExp(ArrayView<float> scratch, ArrayView<float> x, long start, int cols)
    {
        float max = float.NegativeInfinity;
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) max = XMath.Max(max, x[start + j]);
        max = RowGroup.Max(scratch, max);
        if (max == float.NegativeInfinity) return max;
        float partial = 0f;
        for (int j = Group.IdxX; j < cols; j += RowGroup.Threads) partial += XMath.Exp(x[start + j] - max);
        return max + XMath.Log(RowGroup.Sum(scratch, partial));
    }

    /// <summary>y = softmax(x) (log: log-softmax) row by row; x and y (rows, cols).</summary>
    public static void Forward(Device device, ArrayView<float> x, ArrayView<float> y, int rows, int cols, bool log)
    {
        CheckRows(x, y, rows, cols);
        if (rows == 0 || cols == 0) return;
        var kernel = log
            ? device.Kernels.Get("log_softmax", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(LogSoftmaxKernel))
            : device.Kernels.Get("softmax", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(SoftmaxKernel));
        kernel(RowGroup.Config(rows), x, y, cols);
    }

    /// <summary>dx += the backward of softmax (log: log-softmax) given its output y and dy.</summary>
    public static void Backward(Device device, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, int rows, int cols, bool log)
    {
        CheckRows(y, dy, rows, cols);
        CheckRows(y, dx, rows, cols);
        if (rows == 0 || cols == 0) return;
        var kernel = log
            ? device.Kernels.Get("log_softmax_backward", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(LogSoftmaxBackwardKernel))
            : device.Kernels.Get("softmax_backward", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(SoftmaxBackwardKernel));
        kernel(RowGroup.Config(rows), y, dy, dx, cols);
    }

    internal static void CheckRows(ArrayView<float> a, ArrayView<float> b, int rows, int cols)
    {
        if (a.Length != (long)rows * cols || b.Length != (long)rows * cols)
            throw new ArgumentException($"row op: views of {a.Length} and {b.Length} elements, expected ({rows}, {cols})");
    }

    /// <summary>Host round trips (tests, `grpo check`).</summary>
    public static class Host
    {
        public static float[] Forward(Device device, float[] x, int rows, int cols, bool log)
        {
            using var deviceX = device.UploadToPool<float>(x);
            using var deviceY = device.Zeros<float>(x.Length);
            SoftmaxKernels.Forward(device, deviceX.View, deviceY.View, rows, cols, log);
            return Device.DownloadArray<float>(deviceY.View);
        }

        public static float[] Backward(Device device, float[] y, float[] dy, float[] dxStart, int rows, int cols, bool log)
        {
            using var deviceY = device.UploadToPool<float>(y);
            using var deviceDy = device.UploadToPool<float>(dy);
            using var deviceDx = device.UploadToPool<float>(dxStart);
            SoftmaxKernels.Backward(device, deviceY.View, deviceDy.View, deviceDx.View, rows, cols, log);
            return Device.DownloadArray<float>(deviceDx.View);
        }
    }
}
