// The CUDA port of Ops/RmsNorm.cs (Hugging Face Llama's RMSNorm), x (rows, C), weight w (C):
//   forward (one RowGroup per row):  r = 1 / sqrt(mean_j x_j^2 + eps),  y_j = (x_j * r) * w_j   (r kept per row)
//   dx (one RowGroup per row):       dx_j += r * dy_j * w_j - (r^3 / C) * x_j * sum_k dy_k w_k x_k
//   dw (ColumnGroup, down columns):  dw_j += sum over rows of dy_j * x_j * r
// dw is a sum over all rows (8192 tokens and more): one thread per channel walking every row left all
// but C threads of the GPU idle. Now blocks of rows are summed in parallel (ColumnGroup: 32 channels
// by 8 lanes of rows a group) into pooled partials (blocks, C), which ReduceKernels.SumAxis then adds
// into dw; one pass straight into dw when the rows fit one block. No atomics: deterministic.
// Launchers take device views (a device-resident tensor calls them without host round trips);
// Host.* (upload, run, download) is for the tests and `grpo check`.
// Tests: Grpo.Tests/Compute/RowKernelTests.cs, ColumnKernelTests.cs, PtxCompileTests.cs; `grpo check`.
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

    /// <summary>
    /// out viewed (blocks, C), blocks = Grid.DimY: out[b, j] (+)= the sum of dy[row, j] x[row, j] r[row]
    /// over the rows of block b, [b rowsPerBlock, (b + 1) rowsPerBlock) within rows.
    /// </summary>
    public static void RmsNormWeightGradPartialsKernel(ArrayView<float> x, ArrayView<float> inverseRms, ArrayView<float> dy,
        ArrayView<float> output, int rows, int channels, int rowsPerBlock, int accumulate)
    {
        var scratch = SharedMemory.Allocate<float>(ColumnGroup.Threads);
        int lane = Group.IdxX / ColumnGroup.Columns;
        int j = Grid.IdxX * ColumnGroup.Columns + Group.IdxX % ColumnGroup.Columns;
        int first = Grid.IdxY * rowsPerBlock, end = rows - first < rowsPerBlock ? rows : first + rowsPerBlock;
        float partial = 0f;
        if (j < channels)
            for (int row = first + lane; row < end; row += ColumnGroup.Lanes)
            {
                long at = (long)row * channels + j;
                partial += dy[at] * x[at] * inverseRms[row];
            }
        float total = ColumnGroup.Sum(scratch, partial);
        if (lane != 0 || j >= channels) return;
        long outAt = (long)Grid.IdxY * channels + j;
        if (accumulate != 0) output[outAt] += total;
        else output[outAt] = total;
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
        if (dWeight.Length > 0) WeightGrad(device, x, inverseRms, dy, dWeight, rows, channels);
    }

    /// <summary>dWeight += the weight gradient, in blocks of rowsPerBlock rows (0: ColumnGroup.RowsPerBlock picks).</summary>
    public static void WeightGrad(Device device, ArrayView<float> x, ArrayView<float> inverseRms, ArrayView<float> dy,
        ArrayView<float> dWeight, int rows, int channels, int rowsPerBlock = 0)
    {
        if (dWeight.Length != channels) throw new ArgumentException($"rms norm: dWeight has {dWeight.Length} elements, expected {channels}");
        if (x.Length != (long)rows * channels || dy.Length != x.Length || inverseRms.Length != rows)
            throw new ArgumentException($"rms norm: x {x.Length}, dy {dy.Length}, inverseRms {inverseRms.Length} for ({rows}, {channels})");
        if (rows == 0 || channels == 0) return;
        int columnGroups = ColumnGroup.GroupsFor(channels);
        if (rowsPerBlock <= 0) rowsPerBlock = ColumnGroup.RowsPerBlock(device, rows, columnGroups);
        int blocks = ColumnGroup.Blocks(rows, rowsPerBlock);
        var kernel = device.Kernels.Get("rms_norm_weight_grad", acc =>
            acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(RmsNormWeightGradPartialsKernel));
        if (blocks == 1)
        {
            kernel(ColumnGroup.Config(columnGroups, 1), x, inverseRms, dy, dWeight, rows, channels, rows, 1);
            return;
        }
        using var partials = device.Pool.Rent<float>((long)blocks * channels);   // (blocks, C)
        kernel(ColumnGroup.Config(columnGroups, blocks), x, inverseRms, dy, partials.View, rows, channels, rowsPerBlock, 0);
        ReduceKernels.SumAxis(device, partials.View, dWeight, 1, blocks, channels, 1f, accumulate: true, rowsPerBlock: blocks);
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
            float[] dxStart, float[] dWeightStart) => Run(device, x, weight, eps, dy, dxStart, dWeightStart, 0);

        /// <summary>Run with the weight gradient in blocks of rowsPerBlock rows (0: ColumnGroup.RowsPerBlock picks).</summary>
        public static (float[] Y, float[] Dx, float[] DWeight) Run(Device device, float[] x, float[] weight, float eps, float[] dy,
            float[] dxStart, float[] dWeightStart, int rowsPerBlock)
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
            Backward(device, deviceX.View, deviceW.View, inverseRms.View, deviceDy.View, dx.View, default, rows, channels);
            WeightGrad(device, deviceX.View, inverseRms.View, deviceDy.View, dw.View, rows, channels, rowsPerBlock);
            return (Device.DownloadArray<float>(y.View), Device.DownloadArray<float>(dx.View), Device.DownloadArray<float>(dw.View));
        }
    }
}
