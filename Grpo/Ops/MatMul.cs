// MatMul: C = op(A) @ op(B), batched, where op is the identity or the transpose of the last two axes.
//
// Shapes: A is (..., M, K) (or (..., K, M) with transposeA); B is (K, N) shared by every batch, or
// (..., K, N) with A's leading axes (or (..., N, K) with transposeB). C is (..., M, N).
// A linear layer with a Hugging Face weight W of shape (out, in) is MatMul(x, W, transposeB: true).
// Backward (C = A'B' with A' = op(A), B' = op(B)):
//   dA' = dC @ B'^T      dB' = A'^T @ dC
// and dA = dA' (or its transpose), likewise for B. A shared B sums dB' over the batch.
// Every product ends in Compute/CpuGemm.Multiply. Tests: GradCheckTests (matmul), MatMulTests.
// Precision (Ops/MatMulPrecision.cs): Fp32 by default. Bf16 rounds both operands of every product to
// bf16 (8 significant bits; round to nearest even) and sums in fp32, forward and backward (the backward
// rounds dC and the stored operands: dA' = bf16(dC) @ bf16(B')^T). The result and the gradients are fp32
// tensors, so master weights and the optimizer stay fp32. The CPU code below is the spec; on a device
// the products go to Compute/Kernels/Bf16MatMulKernels.cs (tensor cores on CUDA). Tests: Bf16MatMulTests.
using System.Buffers;
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor MatMul(Tensor a, Tensor b, bool transposeA = false, bool transposeB = false,
        MatMulPrecision precision = MatMulPrecision.Fp32)
    {
        if (a.Rank < 2 || b.Rank < 2) throw new ArgumentException($"MatMul needs rank >= 2, got {ShapeText(a)} and {ShapeText(b)}");
        int m = transposeA ? a.Dim(-1) : a.Dim(-2), k = transposeA ? a.Dim(-2) : a.Dim(-1);
        int kb = transposeB ? b.Dim(-1) : b.Dim(-2), n = transposeB ? b.Dim(-2) : b.Dim(-1);
        if (k != kb) throw new ArgumentException($"MatMul: inner dimensions differ, {ShapeText(a)} and {ShapeText(b)} (transposeA {transposeA}, transposeB {transposeB})");
        int batch = a.Size / (m * k == 0 ? 1 : m * k);
        bool shared = b.Rank == 2;
        if (!shared && b.Size != batch * k * n) throw new ArgumentException($"MatMul: batch axes differ, {ShapeText(a)} and {ShapeText(b)}");

        var shape = a.Shape.ToArray();
        shape[^2] = m; shape[^1] = n;
        if (OnGpu("MatMul", a, b)) return MatMulOnDevice(a, b, transposeA, transposeB, shape, batch, m, k, n, shared, precision);
        var c = Tensor.Zeros(shape);
        bool bf16 = precision == MatMulPrecision.Bf16;
        float[] aData = bf16 ? RoundToBf16(a.Data) : a.Data, bData = bf16 ? RoundToBf16(b.Data) : b.Data;
        // A shared, untransposed-A product is one tall (batch*M, K) x (K, N) product.
        bool flatten = shared && !transposeA;
        int steps = flatten ? 1 : batch, rows = flatten ? batch * m : m;
        int aStride = m * k, bStride = shared ? 0 : k * n, cStride = m * n;

        for (int s = 0; s < steps; s++)
            Product(aData.AsSpan(s * aStride), transposeA, bData.AsSpan(s * bStride), transposeB,
                c.Data.AsSpan(s * cStride), rows, k, n, accumulate: false);

        Autograd.Record(c, [a, b], () =>
        {
            var dC = bf16 ? RoundToBf16(c.Grad!) : c.Grad!;
            for (int s = 0; s < steps; s++)
            {
                var dCs = dC.AsSpan(s * cStride);
                var aS = aData.AsSpan(s * aStride);
                var bS = bData.AsSpan(s * bStride);
                if (a.RequiresGrad)
                {
                    var dA = a.GradOrCreate().AsSpan(s * aStride);
                    if (!transposeA) Product(dCs, false, bS, !transposeB, dA, rows, n, k, accumulate: true);
                    else Product(bS, transposeB, dCs, true, dA, k, n, m, accumulate: true);
                }
                if (b.RequiresGrad)
                {
                    var dB = b.GradOrCreate().AsSpan(s * bStride);
                    if (!transposeB) Product(aS, !transposeA, dCs, false, dB, k, rows, n, accumulate: true);
                    else Product(dCs, true, aS, transposeA, dB, n, rows, k, accumulate: true);
                }
            }
        });
        return c;
    }

    /// <summary>The same product and backward on the GPU (Compute/Kernels/MatMulKernels.cs in fp32, Bf16MatMulKernels.cs
    /// in bf16: the same calls, any shape, which pads to its tiles), batch by batch as on the CPU, one product for the
    /// flattened case (a linear layer's (B*T, K) x W^T).</summary>
    private static Tensor MatMulOnDevice(Tensor a, Tensor b, bool transposeA, bool transposeB, int[] shape, int batch, int m, int k, int n, bool shared,
        MatMulPrecision precision)
    {
        var device = a.Device;
        var c = Tensor.Empty(device, shape);
        bool flatten = shared && !transposeA;
        int steps = flatten ? 1 : batch, rows = flatten ? batch * m : m;
        long aStride = (long)m * k, bStride = shared ? 0 : (long)k * n, cStride = (long)m * n;
        ArrayView<float> Slice(ArrayView<float> view, long stride, int s) => stride == 0 || steps == 1 ? view : view.SubView(s * stride, stride);
        void Product(ArrayView<float> x, bool tx, ArrayView<float> y, bool ty, ArrayView<float> z, int pm, int pk, int pn, bool accumulate)
        {
            // Past Covers' sizes (over 2^31 elements padded) the product runs in fp32, the one place it departs from the spec.
            if (precision == MatMulPrecision.Bf16 && Bf16MatMulKernels.Covers(pm, pk, pn)) Bf16MatMulKernels.MatMul(device, x, tx, y, ty, z, pm, pk, pn, accumulate);
            else MatMulKernels.MatMul(device, x, tx, y, ty, z, 1, pm, pk, pn, sharedB: true, accumulate);
        }

        for (int s = 0; s < steps; s++)
            Product(Slice(a.View, aStride, s), transposeA, Slice(b.View, bStride, s), transposeB, Slice(c.View, cStride, s), rows, k, n, accumulate: false);

        Autograd.Record(c, [a, b], () =>
        {
            var dC = c.GradView();
            for (int s = 0; s < steps; s++)
            {
                var dCs = Slice(dC, cStride, s);
                var aS = Slice(a.View, aStride, s);
                var bS = Slice(b.View, bStride, s);
                if (a.RequiresGrad)
                {
                    var dA = Slice(a.GradView(), aStride, s);
                    if (!transposeA) Product(dCs, false, bS, !transposeB, dA, rows, n, k, accumulate: true);
                    else Product(bS, transposeB, dCs, true, dA, k, n, m, accumulate: true);
                }
                if (b.RequiresGrad)
                {
                    var dB = Slice(b.GradView(), bStride, s);
                    if (!transposeB) Product(aS, !transposeA, dCs, false, dB, k, rows, n, accumulate: true);
                    else Product(dCs, true, aS, transposeA, dB, n, rows, k, accumulate: true);
                }
            }
        });
        return c;
    }

    /// <summary>A copy of values, each rounded to the nearest bf16 (ties to even) and held as the float it stands for.</summary>
    internal static float[] RoundToBf16(ReadOnlySpan<float> values)
    {
        var rounded = new float[values.Length];
        for (int i = 0; i < values.Length; i++) rounded[i] = TensorCoreGemmKernels.FromBf16(TensorCoreGemmKernels.ToBf16(values[i]));
        return rounded;
    }

    /// <summary>c (m, n) (+)= op(a) (m, k) @ op(b) (k, n); a transposed operand is stored (k, m) or (n, k).</summary>
    /// <remarks>The GEMM reads a transposed A in place; a transposed B is copied first (in the model B is a
    /// weight, small next to the activations, so the copy is cheap).</remarks>
    internal static void Product(ReadOnlySpan<float> a, bool transposeA, ReadOnlySpan<float> b, bool transposeB,
        Span<float> c, int m, int k, int n, bool accumulate)
    {
        float[]? bT = null;
        if (transposeB)
        {
            bT = ArrayPool<float>.Shared.Rent(k * n);
            CpuGemm.Transpose(b[..(k * n)], bT, n, k);
            b = bT;
        }
        CpuGemm.Multiply(a, transposeA, b, c, m, k, n, accumulate);
        if (bT != null) ArrayPool<float>.Shared.Return(bT);
    }
}
