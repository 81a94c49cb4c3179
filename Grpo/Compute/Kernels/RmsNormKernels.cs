// The CUDA port of Ops/RmsNorm.cs (Hugging Face Llama's RMSNorm), x (rows, C), weight w (C):
//   forward (one RowGroup per row):  r = 1 / sqrt(mean_j x_j^2 + eps),  y_j = (x_j * r) * w_j   (r kept per row)
//   dx (one RowGroup per row):       dx_j += r * dy_j * w_j - (r^3 / C) * x_j * sum_k dy_k w_k x_k
//   dw (one thread per channel):     dw_j += sum over rows of dy_j * x_j * r, row after row
// dw walks the rows in order, as the CPU does, with no atomics: deterministic, and neighbouring
// threads read neighbouring channels (coalesced). It is C threads long, so it leaves most of a big GPU
// idle; a two-stage sum (per-block partials, then a sum of partials) is the next step if it shows.
// Launchers take device views (a device-resident tensor calls them without host round trips);
// Host.* (upload, run, download) is for the tests and `grpo check`.
// Tests: Grpo.Tests/Compute/RowKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static class RmsNormKernels
{
    public static void RmsNormKernel(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, ArrayView<float> inverseRms,
        int channels, float eps)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        int row = Grid.IdxX;
        long start = (long)row * channels;
        float partial = 0f;
        for (int j = Group.IdxX; j < channels; j += RowGroup.Threads) partial += x[start + j] * x[start + j];
        float meanSquare = RowGroup.Sum(scratch, partial) / channels;
        float r = 1f / XMath.Sqrt(meanSquare + eps);
        for (int j = Group.IdxX; j < channels; j += RowGroup.Threads) y[start + j] = x[start + j] * r * weight[j];
        if (Group.IdxX == 0) inverseRms[row] = r;
    }

    public static void RmsNormBackwardKernel(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> inverseRms,
        ArrayView<float> dy, ArrayView<float> dx, int channels)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        int row = Grid.IdxX;
        long start = (long)row * channels;
        float partial = 0f;
        for (int j = Group.IdxX; j < channels; j += RowGroup.Threads) partial += dy[start + j] * weight[j] * x[start + j];
        float gDotX = RowGroup.Sum(scratch, partial);
        float r = inverseRms[row];
        float coefficient = r * r * r / channels * gDotX;
        for (int j = Group.IdxX; j < channels; j += RowGroup.Threads)
            dx[start + j] += r * dy[start + j] * weight[j] - coefficient * x[start + j];
    }

    public static void RmsNormWeightGradKernel(Index1D j, ArrayView<float> x, ArrayView<float> inverseRms, ArrayView<float> dy,
        ArrayView<float> dWeight, int rows, int channels)
    {
        float total = dWeight[j];
        for (int row = 0; row < rows; row++)
        {
            long at = (long)row * channels + j;
            total += dy[at] * x[at] * inverseRms[row];
        }
        dWeight[j] = total;
    }

    /// <summary>y = RmsNorm(x) * weight row by row; inverseRms (rows) receives r for the backward.</summary>
    public static void Forward(Device device, ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, ArrayView<float> inverseRms,
        int rows, int channels, float eps)
    {
        Check(x, weight, inverseRms, rows, channels);
        SoftmaxKernels.CheckRows(x, y, rows, channels);
        if (rows == 0) return;
        device.Kernels.Get("rms_norm", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(RmsNormKernel))
            (RowGroup.Config(rows), x, weight, y, inverseRms, channels, eps);
    }

    /// <summary>dx += the input gradient (when dx is not empty), dWeight += the weight gradient (when not empty).</summary>
    public static void Backward(Device device, ArrayView<float> x, ArrayView<float> weight, ArrayView<float> inverseRms, ArrayView<float> dy,
        ArrayView<float> dx, ArrayView<float> dWeight, int rows, int channels)
    {
        Check(x, weight, inverseRms, rows, channels);
        SoftmaxKernels.CheckRows(x, dy, rows, channels);
        if (rows == 0) return;
        if (dx.Length > 0)
        {
            SoftmaxKernels.CheckRows(x, dx, rows, channels);
            device.Kernels.Get("rms_norm_backward", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(RmsNormBackwardKernel))
                (RowGroup.Config(rows), x, weight, inverseRms, dy, dx, channels);
        }
        if (dWeight.Length > 0)
        {
            if (dWeight.Length != channels) throw new ArgumentException($"rms norm: dWeight has {dWeight.Length} elements, expected {channels}");
            device.Kernels.Get("rms_norm_weight_grad", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(RmsNormWeightGradKernel))
                (channels, x, inverseRms, dy, dWeight, rows, channels);
        }
    }

    private static void Check(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> inverseRms, int rows, int channels)
    {
        if (x.Length != (long)rows * channels || weight.Length != channels || inverseRms.Length != rows)
            throw new ArgumentException($"rms norm: x {x.Length}, weight {weight.Length}, inverseRms {inverseRms.Length} for ({rows}, {channels})");
    }

    /// <summary>Host round trips (tests, `grpo check`): y, and dx = dxStart + backward, dw = dwStart + backward.</summary>
    public static class Host
    {
        public static (float[] Y, float[] Dx, float[] DWeight) Run(Device device, float[] x, float[] weight, float eps, float[] dy,
            float[] dxStart, float[] dWeightStart)
        {
            int channels = weight.Length, rows = x.Length / channels;
            using var deviceX = device.UploadToPool<float>(x);
            using var deviceW = device.UploadToPool<float>(weight);
            using var y = device.Zeros<float>(x.Length);
            using var inverseRms = device.Zeros<float>(rows);
            using var deviceDy = device.UploadToPool<float>(dy);
            using var dx = device.UploadToPool<float>(dxStart);
            using var dw = device.UploadToPool<float>(dWeightStart);
            Forward(device, deviceX.View, deviceW.View, y.View, inverseRms.View, rows, channels, eps);
            Backward(device, deviceX.View, deviceW.View, inverseRms.View, deviceDy.View, dx.View, dw.View, rows, channels);
            return (Device.DownloadArray<float>(y.View), Device.DownloadArray<float>(dx.View), Device.DownloadArray<float>(dw.View));
        }
    }
}
