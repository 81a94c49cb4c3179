// Device's host-side ops: each takes host arrays, and on an ILGPU device uploads them into pooled
// buffers, runs the kernel, and downloads the result; on Device.Cpu it runs the CPU reference.
// This is what the kernel tests and `grpo check` call. It is not how training runs on the GPU: a
// round trip through host memory per op would cost more than the op. There, tensors live on the device
// (Tensors/Tensor.cs, DeviceArray.cs) and the ops call the launchers that take device views
// (MatMulKernels.MatMul, ElementwiseKernels.Add, ...) directly.
// Tests: Grpo.Tests/Compute/KernelTests.cs.
using System.Numerics.Tensors;
using Grpo.Compute.Kernels;

namespace Grpo.Compute;

public sealed partial class Device
{
    /// <summary>
    /// c[s] (m, n) (+)= op(a[s]) @ op(b[s]) for s in [0, batch). a holds batch (m, k) matrices, or (k, m)
    /// when transposeA; b holds batch (k, n) matrices (or (n, k) when transposeB), or just one, shared.
    /// </summary>
    public void MatMul(ReadOnlySpan<float> a, bool transposeA, ReadOnlySpan<float> b, bool transposeB, Span<float> c,
        int batch, int m, int k, int n, bool accumulate = false)
    {
        long aSize = (long)m * k, bSize = (long)k * n, cSize = (long)m * n;
        if (a.Length != batch * aSize) throw new ArgumentException($"MatMul: a has {a.Length} elements, expected {batch} x {m} x {k}");
        if (c.Length != batch * cSize) throw new ArgumentException($"MatMul: c has {c.Length} elements, expected {batch} x {m} x {n}");
        bool sharedB = b.Length == bSize;
        if (!sharedB && b.Length != batch * bSize)
            throw new ArgumentException($"MatMul: b has {b.Length} elements, expected {k} x {n} or {batch} x {k} x {n}");

        if (IsCpu)
        {
            for (int s = 0; s < batch; s++)
                CpuProduct(a.Slice((int)(s * aSize), (int)aSize), transposeA, b.Slice(sharedB ? 0 : (int)(s * bSize), (int)bSize),
                    transposeB, c.Slice((int)(s * cSize), (int)cSize), m, k, n, accumulate);
            return;
        }
        using var deviceA = Pool.Rent<float>(a.Length);
        using var deviceB = Pool.Rent<float>(b.Length);
        using var deviceC = Pool.Rent<float>(c.Length);
        deviceA.Upload(a);
        deviceB.Upload(b);
        if (accumulate) deviceC.Upload(c);
        MatMulKernels.MatMul(this, deviceA.View, transposeA, deviceB.View, transposeB, deviceC.View, batch, m, k, n, sharedB, accumulate);
        deviceC.Download(c);
    }

    /// <summary>y = a + b, b of a's length or a divisor of it, repeated (a bias).</summary>
    public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y) => Binary(a, b, y, ElementwiseKernels.Add,
        (x, bias, z) => TensorPrimitives.Add(x, bias, z));

    /// <summary>y = a * b, b of a's length or a divisor of it, repeated (a norm weight).</summary>
    public void Mul(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y) => Binary(a, b, y, ElementwiseKernels.Mul,
        (x, w, z) => TensorPrimitives.Multiply(x, w, z));

    /// <summary>y = s * a.</summary>
    public void Scale(ReadOnlySpan<float> a, float s, Span<float> y)
    {
        if (IsCpu) { TensorPrimitives.Multiply(a, s, y); return; }
        using var deviceA = UploadToPool<float>(a);
        using var deviceY = Pool.Rent<float>(y.Length);
        ElementwiseKernels.Scale(this, deviceA.View, s, deviceY.View);
        deviceY.Download(y);
    }

    /// <summary>y = e^a.</summary>
    public void Exp(ReadOnlySpan<float> a, Span<float> y)
    {
        if (IsCpu) { TensorPrimitives.Exp(a, y); return; }
        using var deviceA = UploadToPool<float>(a);
        using var deviceY = Pool.Rent<float>(y.Length);
        ElementwiseKernels.Exp(this, deviceA.View, deviceY.View);
        deviceY.Download(y);
    }

    private delegate void DeviceBinary(Device device, ILGPU.ArrayView<float> a, ILGPU.ArrayView<float> b, ILGPU.ArrayView<float> y);
    private delegate void CpuBinary(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y);

    private void Binary(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y, DeviceBinary kernel, CpuBinary cpu)
    {
        if (b.Length == 0 || a.Length % b.Length != 0 || y.Length != a.Length)
            throw new ArgumentException($"element-wise op: a has {a.Length} elements, b {b.Length}, y {y.Length}");
        if (IsCpu)
        {
            for (int start = 0; start < a.Length; start += b.Length)
                cpu(a.Slice(start, b.Length), b, y.Slice(start, b.Length));
            return;
        }
        using var deviceA = UploadToPool<float>(a);
        using var deviceB = UploadToPool<float>(b);
        using var deviceY = Pool.Rent<float>(y.Length);
        kernel(this, deviceA.View, deviceB.View, deviceY.View);
        deviceY.Download(y);
    }


    /// <summary>The CPU reference product c (+)= op(a) @ op(b), transposing into scratch arrays first.</summary>
    private static void CpuProduct(ReadOnlySpan<float> a, bool transposeA, ReadOnlySpan<float> b, bool transposeB,
        Span<float> c, int m, int k, int n, bool accumulate)
    {
        if (transposeA) { var t = new float[m * k]; CpuGemm.Transpose(a, t, k, m); a = t; }
        if (transposeB) { var t = new float[k * n]; CpuGemm.Transpose(b, t, n, k); b = t; }
        CpuGemm.Multiply(a, b, c, m, k, n, accumulate);
    }
}
