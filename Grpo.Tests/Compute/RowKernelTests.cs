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

    [Fact]
    public void TokenLogProbsByHand()
    {
        // logits [0, ln 3], target 1: ln(3/4) = -0.2877; dy = 1 gives dx = onehot - softmax = [-0.25, 0.25]
        var (logProbs, dLogits) = TokenLogProbKernels.Host.TokenLogProbs(device, [0, MathF.Log(3)], [1], 2, [1], new float[2]);
        AssertClose([MathF.Log(0.75f)], logProbs, 1e-6f);
        AssertClose([-0.25f, 0.25f], dLogits, 1e-6f);
    }

    [Theory]
    [InlineData(4, 9)]
    [InlineData(3, 260)]
    public void TokenLogProbsMatchReference(int rows, int vocab)
    {
        var rng = new Random(rows * 100 + vocab);
        var logits = GradCheck.Random(rng, 5f, rows, vocab);
        int[] targets = Enumerable.Range(0, rows).Select(_ => rng.Next(vocab)).ToArray();
        var dy = GradCheck.Random(rng, 1f, rows).Data;
        dy[0] = 0f;   // a row with no gradient is skipped
        var dStart = GradCheck.Random(rng, 1f, rows, vocab).Data;
        var (y, dx) = Reference(t => Op.TokenLogProbs(t, targets), logits, dy, dStart);
        var (logProbs, dLogits) = TokenLogProbKernels.Host.TokenLogProbs(device, logits.Data, targets, vocab, dy, dStart);
        AssertClose(y, logProbs, 1e-5f);
        AssertClose(dx, dLogits, 1e-5f);
    }

    [Theory]
    [InlineData(5, 11, true)]
    [InlineData(3, 200, false)]
    public void CrossEntropyMatchesReference(int rows, int vocab, bool weighted)
    {
        var rng = new Random(rows * 100 + vocab);
        var logits = GradCheck.Random(rng, 5f, rows, vocab);
        int[] targets = Enumerable.Range(0, rows).Select(_ => rng.Next(vocab)).ToArray();
        float[]? weights = weighted ? Enumerable.Range(0, rows).Select(i => i % 2 == 0 ? 0f : 1.5f).ToArray() : null;
        var (loss, dx) = Reference(t => Op.CrossEntropy(t, targets, weights), logits, [0.7f]);
        var (deviceLoss, dLogits) = TokenLogProbKernels.Host.CrossEntropy(device, logits.Data, targets, weights, vocab, 0.7f, new float[logits.Size]);
        AssertClose(loss, [deviceLoss], 1e-5f);
        AssertClose(dx, dLogits, 1e-5f);
    }

    [Fact]
    public void CrossEntropyOfAllMaskedRowsIsZero()
    {
        // W = 0: the loss is 0 and no gradient flows, as on the CPU
        var (loss, dLogits) = TokenLogProbKernels.Host.CrossEntropy(device, [1, 2, 3, 4], [0, 1], [0, 0], 2, 1f, new float[4]);
        Assert.Equal(0f, loss);
        Assert.All(dLogits, d => Assert.Equal(0f, d));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenLogProbKernels.Host.CrossEntropy(device, [1, 2], [2], null, 2, 1f, new float[2]));
    }

    [Fact]
    public void RmsNormByHand()
    {
        // x = [3, 4], w = 1, eps = 0: r = 1 / sqrt((9 + 16) / 2) = 1 / 3.5355 -> y = [0.8485, 1.1314]
        var (y, _, _) = RmsNormKernels.Host.Run(device, [3, 4], [1, 1], 0f, [0, 0], new float[2], new float[2]);
        AssertClose([3f / MathF.Sqrt(12.5f), 4f / MathF.Sqrt(12.5f)], y, 1e-6f);
    }

    [Theory]
    [InlineData(5, 6)]
    [InlineData(3, 150)]
    public void RmsNormMatchesReference(int rows, int channels)
    {
        var rng = new Random(rows * 1000 + channels);
        var x = GradCheck.Random(rng, 2f, rows, channels);
        var weight = Tensor.Parameter(GradCheck.Random(rng, 1f, channels).Data, channels);
        var dy = GradCheck.Random(rng, 1f, rows, channels).Data;
        var dxStart = GradCheck.Random(rng, 1f, rows, channels).Data;
        var dwStart = GradCheck.Random(rng, 1f, channels).Data;
        weight.AccumulateGrad(dwStart);
        var (y, dx) = Reference(t => Op.RmsNorm(t, weight, 1e-5f), x, dy, dxStart);
        var (deviceY, deviceDx, deviceDw) = RmsNormKernels.Host.Run(device, x.Data, weight.Data, 1e-5f, dy, dxStart, dwStart);
        AssertClose(y, deviceY, 1e-5f);
        AssertClose(dx, deviceDx, 1e-5f);
        AssertClose(weight.Grad!, deviceDw, 1e-5f);
    }
}
