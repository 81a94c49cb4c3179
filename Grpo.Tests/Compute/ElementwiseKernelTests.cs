// The element-wise kernels' v2 (16-byte loads, grid-stride loop) against the CPU reference ops and
// against v1, on ILGPU's CPU accelerator: lengths that are and are not multiples of 4, a repeated b
// (a bias) whose length is and is not, in-place calls (y the same view as a), sub-views that start
// off a 16-byte boundary (v1 must take them), and a length past one grid so the loop strides.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;
using ILGPU;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class ElementwiseKernelTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Fact]
    public void V2ByHand()
    {
        // [1 2 3 4; 5 6 7 8] + [10 20 30 40] = [11 22 33 44; 15 26 37 48]; * [1 0 -1 2] = [1 0 -3 8; 5 0 -7 16]
        float[] a = [1, 2, 3, 4, 5, 6, 7, 8];
        Assert.Equal([11f, 22, 33, 44, 15, 26, 37, 48], Binary(ElementwiseKernels.Add, a, [10, 20, 30, 40]));
        Assert.Equal([1f, 0, -3, 8, 5, 0, -7, 16], Binary(ElementwiseKernels.Mul, a, [1, 0, -1, 2]));
        // 0.5 * a = [0.5 1 ... 4]; exp [0, ln 2, -ln 4, 1] = [1, 2, 0.25, e]
        Assert.Equal([0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f, 4], Unary((d, x, y) => ElementwiseKernels.Scale(d, x, 0.5f, y), a));
        AssertClose([1f, 2, 0.25f, MathF.E], Unary(ElementwiseKernels.Exp, [0, MathF.Log(2), -MathF.Log(4), 1]), 1e-6f);
    }

    [Theory]
    [InlineData(64, 64, true)]     // same size, vectorised
    [InlineData(96, 8, true)]      // a repeated bias of 8: whole quads
    [InlineData(48, 12, true)]
    [InlineData(36, 6, false)]     // a bias of 6 does not tile quads: v1
    [InlineData(37, 37, false)]    // a length not a multiple of 4: v1
    [InlineData(4, 4, true)]
    public void MatchesReferenceAndV1(int size, int bSize, bool vector)
    {
        var rng = new Random(size * 100 + bSize);
        var a = GradCheck.Random(rng, 3f, size);
        var b = GradCheck.Random(rng, 3f, bSize);
        var aRows = new Tensor(a.Data, size / bSize, bSize);
        using (var da = device.UploadToPool<float>(a.Data))
        using (var db = device.UploadToPool<float>(b.Data))
            Assert.Equal(vector, ElementwiseKernels.UsesVectorLoads(da.View, db.View));

        Assert.Equal(Op.Add(aRows, b).Data, Binary(ElementwiseKernels.Add, a.Data, b.Data));
        Assert.Equal(Op.Mul(aRows, b).Data, Binary(ElementwiseKernels.Mul, a.Data, b.Data));
        Assert.Equal(Op.Scale(a, -1.5f).Data, Unary((d, x, y) => ElementwiseKernels.Scale(d, x, -1.5f, y), a.Data));
        AssertClose(Op.Exp(a).Data, Unary(ElementwiseKernels.Exp, a.Data), 1e-6f);
        // v2 computes each element as v1 does, so they agree bit for bit
        Assert.Equal(Binary(ElementwiseKernels.AddV1, a.Data, b.Data), Binary(ElementwiseKernels.Add, a.Data, b.Data));
        Assert.Equal(Binary(ElementwiseKernels.MulV1, a.Data, b.Data), Binary(ElementwiseKernels.Mul, a.Data, b.Data));
        Assert.Equal(Unary(ElementwiseKernels.ExpV1, a.Data), Unary(ElementwiseKernels.Exp, a.Data));
        Assert.Equal(Unary((d, x, y) => ElementwiseKernels.ScaleV1(d, x, 3f, y), a.Data),
            Unary((d, x, y) => ElementwiseKernels.Scale(d, x, 3f, y), a.Data));
    }

    [Theory]
    [InlineData(32, 8)]    // v2
    [InlineData(30, 10)]   // v1
    public void InPlaceEqualsOutOfPlace(int size, int bSize)
    {
        // y aliasing a, as Autograd's gradient accumulation calls Add(grad, term, grad)
        var rng = new Random(size);
        float[] a = GradCheck.Random(rng, 2f, size).Data, b = GradCheck.Random(rng, 2f, bSize).Data;
        Assert.Equal(Binary(ElementwiseKernels.Add, a, b), InPlace(a, b, (view, bView) => ElementwiseKernels.Add(device, view, bView, view)));
        Assert.Equal(Binary(ElementwiseKernels.Mul, a, b), InPlace(a, b, (view, bView) => ElementwiseKernels.Mul(device, view, bView, view)));
        Assert.Equal(Unary((d, x, y) => ElementwiseKernels.Scale(d, x, 0.25f, y), a), InPlace(a, b, (view, _) => ElementwiseKernels.Scale(device, view, 0.25f, view)));
        Assert.Equal(Unary(ElementwiseKernels.Exp, a), InPlace(a, b, (view, _) => ElementwiseKernels.Exp(device, view, view)));
    }

    [Theory]
    [InlineData(1, false)]   // 4 bytes past a 16-byte boundary: v1
    [InlineData(2, false)]
    [InlineData(4, true)]    // 16 bytes in: aligned, v2
    public void SubViewsOffABoundaryFallBackToV1(int offset, bool vector)
    {
        // a and y are the 16 floats at `offset` of 24-float buffers; what lies around them stays untouched
        var rng = new Random(offset);
        float[] aBuffer = GradCheck.Random(rng, 2f, 24).Data, yBuffer = GradCheck.Random(rng, 2f, 24).Data, b = GradCheck.Random(rng, 2f, 8).Data;
        float[] aPart = aBuffer[offset..(offset + 16)];
        var expected = (float[])yBuffer.Clone();
        Array.Copy(Binary(ElementwiseKernels.Add, aPart, b), 0, expected, offset, 16);

        using var deviceA = device.UploadToPool<float>(aBuffer);
        using var deviceY = device.UploadToPool<float>(yBuffer);
        using var deviceB = device.UploadToPool<float>(b);
        ArrayView<float> aView = deviceA.View.SubView(offset, 16), yView = deviceY.View.SubView(offset, 16);
        Assert.Equal(vector, ElementwiseKernels.UsesVectorLoads(aView, deviceB.View, yView));
        ElementwiseKernels.Add(device, aView, deviceB.View, yView);
        Assert.Equal(expected, Device.DownloadArray<float>(deviceY.View));

        // a misaligned b (the bias) alone also sends add to v1
        ArrayView<float> bOff = deviceA.View.SubView(1, 8);
        Assert.False(ElementwiseKernels.UsesVectorLoads(deviceY.View.SubView(0, 16), bOff, deviceY.View.SubView(0, 16)));
    }

    [Fact]
    public void LengthPastOneGridStrides()
    {
        // the largest grid GridStride gives, plus 39 quads (a multiple of 3, so a bias of 12 tiles it):
        // some threads take a second quad
        var widest = ElementwiseKernels.GridStride(device, long.MaxValue / 8);
        int threads = widest.GridDim.X * widest.GroupDim.X;
        int quads = threads + 39 + (3 - threads % 3) % 3;
        Assert.True(ElementwiseKernels.GridStride(device, quads).GridDim.X * widest.GroupDim.X < quads);
        var rng = new Random(7);
        float[] a = GradCheck.Random(rng, 2f, 4 * quads).Data, b = GradCheck.Random(rng, 2f, 12).Data;
        var aRows = new Tensor(a, 4 * quads / 12, 12);
        Assert.Equal(Op.Add(aRows, new Tensor(b, 12)).Data, Binary(ElementwiseKernels.Add, a, b));
        Assert.Equal(Op.Scale(new Tensor(a, a.Length), 2f).Data, Unary((d, x, y) => ElementwiseKernels.Scale(d, x, 2f, y), a));
    }

    [Fact]
    public void BenchRunsEveryVersion()
    {
        // `grpo bench` times v2 (the launchers) and v1 side by side, and the two column sums
        var figures = Grpo.Cli.GpuBench.Elementwise(device, n: 4096, reps: 1).Select(f => (string)f["op"]).ToList();
        Assert.Equal(["add", "scale", "exp", "add_v1", "scale_v1", "exp_v1", "sum_axis", "rms_norm_weight_grad"], figures);
    }

    private delegate void BinaryLaunch(Device device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y);
    private delegate void UnaryLaunch(Device device, ArrayView<float> a, ArrayView<float> y);

    private float[] Binary(BinaryLaunch launch, float[] a, float[] b)
    {
        using var deviceA = device.UploadToPool<float>(a);
        using var deviceB = device.UploadToPool<float>(b);
        using var deviceY = device.Zeros<float>(a.Length);
        launch(device, deviceA.View, deviceB.View, deviceY.View);
        return Device.DownloadArray<float>(deviceY.View);
    }

    private float[] Unary(UnaryLaunch launch, float[] a)
    {
        using var deviceA = device.UploadToPool<float>(a);
        using var deviceY = device.Zeros<float>(a.Length);
        launch(device, deviceA.View, deviceY.View);
        return Device.DownloadArray<float>(deviceY.View);
    }

    /// <summary>a after launch(a's view, b's view) wrote its result over a.</summary>
    private float[] InPlace(float[] a, float[] b, Action<ArrayView<float>, ArrayView<float>> launch)
    {
        using var deviceA = device.UploadToPool<float>(a);
        using var deviceB = device.UploadToPool<float>(b);
        launch(deviceA.View, deviceB.View);
        return Device.DownloadArray<float>(deviceA.View);
    }
}
