// The kernels that sum down columns (ColumnGroup): ReduceKernels.SumAxis (a middle axis, a bias
// gradient) and RMSNorm's weight gradient, against the CPU reference ops on ILGPU's CPU accelerator.
// Rows are cut into blocks of a given size that does not divide the row count (the last block is
// short, sometimes shorter than the group's 8 lanes), columns cross the group's 32, and the partials
// of stage 1 go through stage 2; both add into what the output held before.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class ColumnKernelTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Fact]
    public void SumAxisInBlocksByHand()
    {
        // x (1, 5, 2) = rows [1 10], [2 20], [3 30], [4 40], [5 50]; blocks of 2 rows: partials
        // [3 30], [7 70], [5 50] -> sums [15 150]; scale 0.5 -> [7.5 75]; added onto [1 1] -> [8.5 76]
        float[] x = [1, 10, 2, 20, 3, 30, 4, 40, 5, 50];
        Assert.Equal([8.5f, 76], ReduceKernels.Host.SumAxis(device, x, [1, 1], 1, 5, 2, 0.5f, rowsPerBlock: 2));
    }

    [Theory]
    [InlineData(1, 30, 5, 7)]      // 5 blocks, the last of 2 rows (fewer than the 8 lanes)
    [InlineData(3, 21, 40, 4)]     // an outer axis, columns past one group's 32
    [InlineData(2, 100, 3, 9)]
    [InlineData(1, 300, 6, 0)]     // a bias gradient's shape, blocks as ColumnGroup.RowsPerBlock picks
    [InlineData(2, 5, 70, 64)]     // one block: a single pass
    public void SumAxisMatchesReference(int outer, int n, int inner, int rowsPerBlock)
    {
        var rng = new Random(outer * 1000 + n * 10 + inner);
        var x = GradCheck.Random(rng, 1f, outer, n, inner);
        var yStart = GradCheck.Random(rng, 1f, outer * inner).Data;
        var sum = Op.Sum(x, 1).Data;
        var expected = sum.Select((s, i) => yStart[i] + 0.25f * s).ToArray();
        var actual = ReduceKernels.Host.SumAxis(device, x.Data, yStart, outer, n, inner, 0.25f, rowsPerBlock);
        AssertClose(expected, actual, 1e-5f);
        // fixed blocks and a fixed tree: the same bits on a second run
        Assert.Equal(actual, ReduceKernels.Host.SumAxis(device, x.Data, yStart, outer, n, inner, 0.25f, rowsPerBlock));
    }

    [Fact]
    public void SumAxisOverNoRowsAddsNothing()
    {
        // an empty middle axis sums to 0: y keeps its start [1 2]
        Assert.Equal([1f, 2], ReduceKernels.Host.SumAxis(device, [], [1, 2], 1, 0, 2, 1f, rowsPerBlock: 0));
    }

    [Fact]
    public void RowsPerBlockFillsTheDeviceWithinLimits()
    {
        // every block has at least MinRowsPerBlock rows unless all rows fit one; blocks cover every row
        foreach (int rows in new[] { 1, 63, 64, 65, 1000, 8192, 100_000 })
            foreach (long columnGroups in new long[] { 1, 24, 100_000 })
            {
                int perBlock = ColumnGroup.RowsPerBlock(device, rows, columnGroups);
                int blocks = ColumnGroup.Blocks(rows, perBlock);
                Assert.True(blocks * (long)perBlock >= rows && (blocks - 1) * (long)perBlock < rows, $"{rows} rows, {perBlock} a block");
                Assert.True(blocks == 1 || perBlock >= ColumnGroup.MinRowsPerBlock, $"{rows} rows, {perBlock} a block");
            }
    }

    [Theory]
    [InlineData(23, 40, 5)]     // 5 blocks, the last of 3 rows; channels past 32
    [InlineData(17, 6, 16)]     // 2 blocks, the last of 1 row
    [InlineData(9, 33, 0)]      // blocks as ColumnGroup.RowsPerBlock picks (one here: a single pass)
    [InlineData(130, 8, 0)]
    public void RmsNormWeightGradMatchesReference(int rows, int channels, int rowsPerBlock)
    {
        var rng = new Random(rows * 100 + channels);
        var x = GradCheck.Random(rng, 2f, rows, channels);
        var weight = Tensor.Parameter(GradCheck.Random(rng, 1f, channels).Data, channels);
        var dy = GradCheck.Random(rng, 1f, rows, channels).Data;
        var dwStart = GradCheck.Random(rng, 1f, channels).Data;
        weight.AccumulateGrad(dwStart);
        Reference(t => Op.RmsNorm(t, weight, 1e-5f), x, dy);
        var (_, _, deviceDw) = RmsNormKernels.Host.Run(device, x.Data, weight.Data, 1e-5f, dy, new float[x.Size], dwStart, rowsPerBlock);
        AssertClose(weight.Grad!, deviceDw, 1e-5f);
    }
}
