// The row kernels (reduce, softmax, log-softmax, RMSNorm, token log-probs, cross-entropy) against the
// CPU reference ops (forward, and backward through Autograd with a random upstream gradient), on
// ILGPU's CPU accelerator at tiny shapes. Rows wider than RowGroup.Threads (128) check the strided
// loops; a row all -infinity checks the softmax's "nothing allowed" case.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class RowKernelTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Fact]
    public void SumAndMeanByHand()
    {
        // x = [[1, 2, 3], [4, 5, 6]]: sum over the last axis = [6, 15], mean = [2, 5]; sum over axis 0 = [5, 7, 9]
        float[] x = [1, 2, 3, 4, 5, 6];
        Assert.Equal([6f, 15], ReduceKernels.Host.Forward(device, x, 2, 3, 1, mean: false));
        Assert.Equal([2f, 5], ReduceKernels.Host.Forward(device, x, 2, 3, 1, mean: true));
        Assert.Equal([5f, 7, 9], ReduceKernels.Host.Forward(device, x, 1, 2, 3, mean: false));
        // mean's backward over the last axis: dy = [3, 6] -> each of the 3 columns gets dy / 3
        Assert.Equal([1f, 1, 1, 2, 2, 2], ReduceKernels.Host.Backward(device, [3, 6], new float[6], 2, 3, 1, mean: true));
    }

    [Theory]
    [InlineData(new[] { 3, 200 }, -1, false)]   // rows wider than one group of 128
    [InlineData(new[] { 2, 5, 3 }, 1, true)]     // a middle axis
    [InlineData(new[] { 4, 6 }, 0, false)]
    public void ReduceMatchesReference(int[] shape, int axis, bool mean)
    {
        var rng = new Random(shape.Sum() + axis);
        var x = GradCheck.Random(rng, 1f, shape);
        int a = axis < 0 ? shape.Length + axis : axis;
        int outer = Tensor.SizeOf(shape.AsSpan(0, a)), n = shape[a], inner = Tensor.SizeOf(shape.AsSpan(a + 1));
        var dy = GradCheck.Random(rng, 1f, outer * inner).Data;
        var (y, dx) = Reference(t => mean ? Op.Mean(t, axis) : Op.Sum(t, axis), x, dy);
        AssertClose(y, ReduceKernels.Host.Forward(device, x.Data, outer, n, inner, mean), 1e-5f);
        AssertClose(dx, ReduceKernels.Host.Backward(device, dy, new float[x.Size], outer, n, inner, mean), 1e-6f);
    }

    [Fact]
    public void SoftmaxByHand()
    {
        // softmax [0, ln 3] = [1, 3] / 4 = [0.25, 0.75]; log-softmax = [ln 0.25, ln 0.75]; a row all -inf gives zeros
        float inf = float.NegativeInfinity;
        var y = SoftmaxKernels.Host.Forward(device, [0, MathF.Log(3), inf, inf], 2, 2, log: false);
        AssertClose([0.25f, 0.75f, 0, 0], y, 1e-6f);
        var logY = SoftmaxKernels.Host.Forward(device, [0, MathF.Log(3)], 1, 2, log: true);
        AssertClose([MathF.Log(0.25f), MathF.Log(0.75f)], logY, 1e-6f);
    }

    [Theory]
    [InlineData(3, 7, false)]
    [InlineData(2, 300, false)]
    [InlineData(3, 7, true)]
    [InlineData(2, 300, true)]
    public void SoftmaxMatchesReference(int rows, int cols, bool log)
    {
        var rng = new Random(rows * 1000 + cols + (log ? 1 : 0));
        var x = GradCheck.Random(rng, 4f, rows, cols);
        var dy = GradCheck.Random(rng, 1f, rows, cols).Data;
        var dxStart = GradCheck.Random(rng, 1f, rows, cols).Data;
        var (y, dx) = Reference(t => log ? Op.LogSoftmax(t) : Op.Softmax(t), x, dy, dxStart);
        AssertClose(y, SoftmaxKernels.Host.Forward(device, x.Data, rows, cols, log), 1e-5f);
        AssertClose(dx, SoftmaxKernels.Host.Backward(device, y, dy, dxStart, rows, cols, log), 1e-5f);
    }
}
