// The CUDA port of Ops/Reduce.cs: the sum or mean along one axis, x viewed as (outer, n, inner):
//   forward:  y[o, i] = scale * sum_j x[o, j, i]          scale = 1 (sum) or 1/n (mean)
//   backward: dx[o, j, i] += scale * dy[o, i]
// The last axis (inner = 1, the common case) runs one RowGroup per row: coalesced strided loads and a
// tree sum. Any other axis sums down columns with ColumnGroup (each (o, i) a column of n rows): many
// rows (a bias gradient: outer = 1, n = thousands of tokens, inner = channels) are cut into blocks
// summed in parallel into pooled partials (outer, blocks, inner), then the partials are summed
// (SumAxisKernel both times); few rows take one pass. SumAll / MeanAll are one row of everything.
// Launchers take device views, so a device-resident tensor calls them with no host round trip;
// Host.* (upload, run, download) is what the tests and `grpo check` use.
// Tests: Grpo.Tests/Compute/RowKernelTests.cs, ColumnKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static class ReduceKernels
{
    /// <summary>partials[g] = sum of x_i^2 over the i that group g visits (groups stride over x).</summary>
    public static void SumOfSquaresKernel(ArrayView<float> x, ArrayView<float> partials)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        long stride = (long)Grid.DimX * RowGroup.Threads;
        float partial = 0f;
        for (long i = (long)Grid.IdxX * RowGroup.Threads + Group.IdxX; i < x.Length; i += stride) partial += x[i] * x[i];
        float total = RowGroup.Sum(scratch, partial);
        if (Group.IdxX == 0) partials[Grid.IdxX] = total;
    }

    /// <summary>How many partial sums SumOfSquares writes.</summary>
    public const int SquareGroups = 64;

    /// <summary>SquareGroups partial sums of x^2 into partials (add them up on the host, in double: deterministic).</summary>
    public static void SumOfSquares(Device device, ArrayView<float> x, ArrayView<float> partials)
    {
        if (partials.Length != SquareGroups) throw new ArgumentException($"sum of squares: {partials.Length} partials, expected {SquareGroups}");
        device.Kernels.Get("sum_of_squares", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>>(SumOfSquaresKernel))
            (RowGroup.Config(SquareGroups), x, partials);
    }

    public static void SumRowsKernel(ArrayView<float> x, ArrayView<float> y, int n, float scale)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        long start = (long)Grid.IdxX * n;
        float partial = 0f;
        for (int j = Group.IdxX; j < n; j += RowGroup.Threads) partial += x[start + j];
        float total = RowGroup.Sum(scratch, partial);
        if (Group.IdxX == 0) y[Grid.IdxX] = total * scale;
    }

    /// <summary>
    /// y viewed (outer, blocks, inner), blocks = Grid.DimY: y[o, b, i] (+)= scale * the sum of x[o, j, i]
    /// over the rows j of block b, [b rowsPerBlock, (b + 1) rowsPerBlock) within n. Grid.IdxX walks
    /// (o, group of ColumnGroup.Columns columns).
    /// </summary>
    public static void SumAxisKernel(ArrayView<float> x, ArrayView<float> y, int n, int inner, int rowsPerBlock, float scale, int accumulate)
    {
        var scratch = SharedMemory.Allocate<float>(ColumnGroup.Threads);
        int columnGroups = ColumnGroup.GroupsFor(inner);
        int o = Grid.IdxX / columnGroups, lane = Group.IdxX / ColumnGroup.Columns;
        int i = Grid.IdxX % columnGroups * ColumnGroup.Columns + Group.IdxX % ColumnGroup.Columns;
        int first = Grid.IdxY * rowsPerBlock, end = n - first < rowsPerBlock ? n : first + rowsPerBlock;
        float partial = 0f;
        if (i < inner)
            for (int j = first + lane; j < end; j += ColumnGroup.Lanes) partial += x[((long)o * n + j) * inner + i];
        float total = ColumnGroup.Sum(scratch, partial);
        if (lane != 0 || i >= inner) return;
        long at = ((long)o * Grid.DimY + Grid.IdxY) * inner + i;
        if (accumulate != 0) y[at] += scale * total;
        else y[at] = scale * total;
    }

    public static void SumAxisBackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> dx, int n, int inner, float scale)
    {
        int o = i / (n * inner), within = i % inner;
        dx[i] += scale * dy[(long)o * inner + within];
    }

    /// <summary>y (outer, inner) = scale * sum over the middle axis of x (outer, n, inner).</summary>
    public static void Forward(Device device, ArrayView<float> x, ArrayView<float> y, int outer, int n, int inner, float scale)
    {
        Check(x, y, outer, n, inner);
        if (y.Length == 0) return;
        if (inner == 1)
            device.Kernels.Get("sum_rows", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, float>(SumRowsKernel))
                (RowGroup.Config(outer), x, y, n, scale);
        else
            SumAxis(device, x, y, outer, n, inner, scale, accumulate: false);
    }

    /// <summary>
    /// y (outer, inner) (+)= scale * sum over the middle axis of x (outer, n, inner), down columns with
    /// ColumnGroup: in blocks of rowsPerBlock rows (0: ColumnGroup.RowsPerBlock picks) and then their
    /// partials, or in one pass when one block holds all n rows.
    /// </summary>
    public static void SumAxis(Device device, ArrayView<float> x, ArrayView<float> y, int outer, int n, int inner, float scale,
        bool accumulate, int rowsPerBlock = 0)
    {
        Check(x, y, outer, n, inner);
        if (y.Length == 0) return;
        long columnGroups = (long)outer * ColumnGroup.GroupsFor(inner);
        if (rowsPerBlock <= 0) rowsPerBlock = ColumnGroup.RowsPerBlock(device, n, columnGroups);
        int blocks = ColumnGroup.Blocks(n, rowsPerBlock);
        var kernel = device.Kernels.Get("sum_axis", acc =>
            acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int, float, int>(SumAxisKernel));
        if (blocks == 1)
        {
            kernel(ColumnGroup.Config(columnGroups, 1), x, y, n, inner, Math.Max(1, n), scale, accumulate ? 1 : 0);
            return;
        }
        using var partials = device.Pool.Rent<float>((long)outer * blocks * inner);   // (outer, blocks, inner)
        kernel(ColumnGroup.Config(columnGroups, blocks), x, partials.View, n, inner, rowsPerBlock, 1f, 0);
        kernel(ColumnGroup.Config(columnGroups, 1), partials.View, y, blocks, inner, blocks, scale, accumulate ? 1 : 0);
    }

    /// <summary>dx (outer, n, inner) += scale * dy (outer, inner) repeated along the middle axis.</summary>
    public static void Backward(Device device, ArrayView<float> dy, ArrayView<float> dx, int outer, int n, int inner, float scale)
    {
        Check(dx, dy, outer, n, inner);
        if (dx.Length == 0) return;
        device.Kernels.Get("sum_axis_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, float>(SumAxisBackwardKernel))
            ((int)dx.Length, dy, dx, n, inner, scale);
    }

    private static void Check(ArrayView<float> x, ArrayView<float> y, int outer, int n, int inner)
    {
        if (x.Length != (long)outer * n * inner || y.Length != (long)outer * inner)
            throw new ArgumentException($"reduce: x has {x.Length} elements and y {y.Length}, expected ({outer}, {n}, {inner}) and ({outer}, {inner})");
        if (x.Length > int.MaxValue) throw new ArgumentException($"reduce: {x.Length} elements is past one launch's 2^31");
    }

    /// <summary>Host round trips (tests, `grpo check`): the shapes of Op.Sum / Op.Mean along axis.</summary>
    public static class Host
    {
        public static float[] Forward(Device device, float[] x, int outer, int n, int inner, bool mean)
        {
            using var deviceX = device.UploadToPool<float>(x);
            using var deviceY = device.Zeros<float>((long)outer * inner);
            ReduceKernels.Forward(device, deviceX.View, deviceY.View, outer, n, inner, mean ? 1f / n : 1f);
            return Device.DownloadArray<float>(deviceY.View);
        }

        /// <summary>yStart + scale * the sum over the middle axis, through SumAxis in blocks of rowsPerBlock rows.</summary>
        public static float[] SumAxis(Device device, float[] x, float[] yStart, int outer, int n, int inner, float scale, int rowsPerBlock)
        {
            using var deviceX = device.UploadToPool<float>(x);
            using var deviceY = device.UploadToPool<float>(yStart);
            ReduceKernels.SumAxis(device, deviceX.View, deviceY.View, outer, n, inner, scale, accumulate: true, rowsPerBlock);
            return Device.DownloadArray<float>(deviceY.View);
        }

        public static float[] Backward(Device device, float[] dy, float[] dxStart, int outer, int n, int inner, bool mean)
        {
            using var deviceDy = device.UploadToPool<float>(dy);
            using var deviceDx = device.UploadToPool<float>(dxStart);
            ReduceKernels.Backward(device, deviceDy.View, deviceDx.View, outer, n, inner, mean ? 1f / n : 1f);
            return Device.DownloadArray<float>(deviceDx.View);
        }
    }
}
