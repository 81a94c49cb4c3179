// Op.MatMul with MatMulPrecision.Bf16: the CPU spec by hand and its gradient law (Ops/MatMul.cs), the
// device path (Compute/Kernels/Bf16MatMulKernels.cs: conversion, padding, transposes, epilogue, a plain
// bf16 GEMM in place of the tensor cores) on ILGPU's CPU accelerator against that spec, and a tiny
// transformer's training step in bf16 there against the CPU bf16 model.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Model;
using Grpo.Ops;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class Bf16MatMulTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Fact]
    public void CpuBf16RoundsBothOperandsAndSumsInFp32()
    {
        // a = [1 + 2^-8, 1 + 3 * 2^-9], b = [3; 1]. bf16 keeps 8 significant bits, so its spacing above 1 is 2^-7:
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7 and goes to the even one, 1; 1 + 3 * 2^-9 is 2^-9 from 1 + 2^-7
        // and 3 * 2^-9 from 1, so it goes up to 1.0078125. 3 and 1 are exact.
        // bf16: 1 * 3 + 1.0078125 * 1 = 4.0078125; fp32: 1.00390625 * 3 + 1.005859375 = 4.017578125.
        var a = Tensor.Parameter([1f + 1f / 256, 1f + 3f / 512], 1, 2);
        var b = Tensor.Parameter([3f, 1f], 2, 1);
        var c = Op.MatMul(a, b, precision: MatMulPrecision.Bf16);
        Assert.Equal([4.0078125f], c.Data);
        Assert.Equal([4.017578125f], Op.MatMul(a, b).Data);
        // dC = [1]: dA = bf16(dC) @ bf16(b)^T = [3, 1]; dB = bf16(a)^T @ bf16(dC) = [1, 1.0078125].
        Autograd.Backward(c, [1f]);
        Assert.Equal([3f, 1f], a.Grad!);
        Assert.Equal([1f, 1.0078125f], b.Grad!);
    }

    [Theory]
    [InlineData(new[] { 2, 3, 5 }, new[] { 4, 5 }, false, true)]     // the linear layer: x (B, T, K) @ W^T
    [InlineData(new[] { 3, 5 }, new[] { 5, 4 }, false, false)]       // plain
    [InlineData(new[] { 2, 5, 3 }, new[] { 2, 5, 4 }, true, false)]  // batched, A transposed
    public void Bf16GradientIsTheFp32GradientOfTheRoundedOperands(int[] aShape, int[] bShape, bool transposeA, bool transposeB)
    {
        // The law: with dC already a bf16 value, the bf16 product's value and gradients equal the fp32 product's of the
        // rounded operands, exactly (the same sums in the same order).
        var rng = new Random(5);
        var aValues = GradCheck.Random(rng, 1f, aShape).Data;
        var bValues = GradCheck.Random(rng, 1f, bShape).Data;
        (float[] C, float[] Da, float[] Db) Run(float[] aData, float[] bData, MatMulPrecision precision, Func<int[], float[]> dC)
        {
            var a = Tensor.Parameter((float[])aData.Clone(), aShape);
            var b = Tensor.Parameter((float[])bData.Clone(), bShape);
            var c = Op.MatMul(a, b, transposeA, transposeB, precision);
            Autograd.Backward(c, dC(c.Shape.ToArray()));
            return (c.Data, a.Grad!, b.Grad!);
        }
        float[] RoundedDc(int[] shape) => Op.RoundToBf16(GradCheck.Random(new Random(9), 1f, shape).Data);
        var bf16 = Run(aValues, bValues, MatMulPrecision.Bf16, RoundedDc);
        var law = Run(Op.RoundToBf16(aValues), Op.RoundToBf16(bValues), MatMulPrecision.Fp32, RoundedDc);
        Assert.Equal(law.C, bf16.C);
        Assert.Equal(law.Da, bf16.Da);
        Assert.Equal(law.Db, bf16.Db);
        Assert.NotEqual(Run(aValues, bValues, MatMulPrecision.Fp32, RoundedDc).C, bf16.C);   // and it is not fp32
    }

    [Theory]
    [InlineData(new[] { 2, 3, 20 }, new[] { 12, 20 }, false, true)]     // linear layer: every product pads M, N, K
    [InlineData(new[] { 130, 20 }, new[] { 129, 20 }, false, true)]     // past one 128 tile in M and N
    [InlineData(new[] { 128, 20 }, new[] { 128, 20 }, false, true)]     // tile multiples: the forward writes straight into C
    [InlineData(new[] { 5, 7 }, new[] { 7, 9 }, false, false)]          // plain
    [InlineData(new[] { 7, 5 }, new[] { 9, 7 }, true, true)]            // both transposed
    [InlineData(new[] { 2, 4, 6 }, new[] { 2, 6, 5 }, false, false)]    // batched B, batch by batch
    [InlineData(new[] { 600, 12 }, new[] { 10, 12 }, false, true)]      // dW's K = 600 tokens: split-K in 2 (one tile, 10 k-tiles)
    public void DevicePathMatchesTheCpuBf16Spec(int[] aShape, int[] bShape, bool transposeA, bool transposeB)
    {
        var rng = new Random(aShape.Sum() + bShape.Sum());
        var aValues = GradCheck.Random(rng, 1f, aShape).Data;
        var bValues = GradCheck.Random(rng, 1f, bShape).Data;
        (float[] C, float[] Da, float[] Db) Run(Device on)
        {
            var a = on.IsCpu ? Tensor.Parameter((float[])aValues.Clone(), aShape) : new Tensor(DeviceArray.Upload(on, aValues), aShape) { RequiresGrad = true };
            var b = on.IsCpu ? Tensor.Parameter((float[])bValues.Clone(), bShape) : new Tensor(DeviceArray.Upload(on, bValues), bShape) { RequiresGrad = true };
            var c = Op.MatMul(a, b, transposeA, transposeB, MatMulPrecision.Bf16);
            Autograd.Backward(c, GradCheck.Random(new Random(3), 1f, c.Shape.ToArray()).Data);
            return (c.ToArray(), a.GradToArray()!, b.GradToArray()!);
        }
        var expected = Run(Device.Cpu);
        var actual = Run(device);
        // The same rounded operands on both sides: only the order of the fp32 sums differs.
        AssertClose(expected.C, actual.C, 1e-5f);
        AssertClose(expected.Da, actual.Da, 1e-5f);
        AssertClose(expected.Db, actual.Db, 1e-5f);
    }

    [Fact]
    public void SplitKOnlyForFewTilesAndALongK()
    {
        // The test device has one multiprocessor: two tiles fill it.
        Assert.Equal(2, Bf16MatMulKernels.SplitsFor(device, 128, 128, 640));    // 1 tile, 10 k-tiles: 2 chunks of 5
        Assert.Equal(1, Bf16MatMulKernels.SplitsFor(device, 256, 128, 640));    // 2 tiles already
        Assert.Equal(1, Bf16MatMulKernels.SplitsFor(device, 128, 128, 448));    // 7 k-tiles: too short
        Assert.Equal(1, Bf16MatMulKernels.SplitsFor(device, 128, 128, 64 * 9)); // 9 k-tiles: 2 chunks would not be whole k-tiles
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ConversionPadsWithZerosAndTransposes(bool v1)
    {
        // src logical (3, 2) = [[1, 2], [3, 4], [5, 1 + 2^-8]] stored transposed as (2, 3) = [[1, 3, 5], [2, 4, 1 + 2^-8]],
        // into a (32, 64) buffer: row r holds src row r, then zeros; 1 + 2^-8 rounds to 1 (a tie, to even).
        var src = DeviceArray.Upload(device, [1f, 3, 5, 2, 4, 1f + 1f / 256]);
        using var dst = device.Pool.Rent<ushort>(32 * 64);
        Bf16MatMulKernels.Convert(device, src.View, transposed: true, dst.View, 3, 2, 32, 64, v1);
        var bits = new ushort[32 * 64];
        dst.Download(bits);
        var values = bits.Select(TensorCoreGemmKernels.FromBf16).ToArray();
        var expected = new float[32 * 64];
        expected[0] = 1; expected[1] = 2; expected[64] = 3; expected[65] = 4; expected[128] = 5; expected[129] = 1;
        Assert.Equal(expected, values);
    }

    [Fact]
    public void TinyTransformerTrainingStepInBf16MatchesTheCpuBf16Model()
    {
        var config = TransformerConfig.Tiny with { Layers = 1 };
        var cpu = new Transformer(config, 4) { Precision = MatMulPrecision.Bf16 };
        var onDevice = cpu.CopyTo(device);
        Assert.Equal(MatMulPrecision.Bf16, onDevice.Precision);
        int batch = 2, seqLen = 5;
        var rng = new Random(8);
        var tokens = Enumerable.Range(0, batch * seqLen).Select(_ => rng.Next(config.VocabSize)).ToArray();
        var targets = Enumerable.Range(0, batch * seqLen).Select(_ => rng.Next(config.VocabSize)).ToArray();
        (float[] Logits, float Loss, float[][] Grads) Step(Transformer model)
        {
            var logits = model.Forward(tokens, batch, seqLen);
            var loss = Op.CrossEntropy(logits, targets);
            Autograd.Backward(loss);
            return (logits.ToArray(), loss.Item(), model.Parameters.Select(p => p.Value.GradToArray()!).ToArray());
        }
        var expected = Step(cpu);
        var actual = Step(onDevice);
        // Inputs to a rounding can differ in their last fp32 bit between the two runs (other sum orders upstream) and
        // then round to neighbouring bf16 values (2^-8 apart relative): judge against each tensor's scale.
        AssertScaled(expected.Logits, actual.Logits, 1e-2);
        Assert.Equal(expected.Loss, actual.Loss, 1e-3);
        for (int p = 0; p < expected.Grads.Length; p++) AssertScaled(expected.Grads[p], actual.Grads[p], 2e-2);

        var fp32 = new Transformer(config, 4);
        Assert.NotEqual(fp32.Forward(tokens, batch, seqLen).Data, expected.Logits);   // the precision reaches the layers
    }

    private static void AssertScaled(float[] expected, float[] actual, double tolerance)
    {
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * scale, $"element {i}: expected {expected[i]}, got {actual[i]} (scale {scale})");
    }
}
