// The CUDA port of Ops/Rope.cs (Hugging Face's rotate_half layout: channel i pairs with i + D/2),
// x (B*T rows, H, D), one thread per pair (row, head, i < D/2):
//   y[i] = x[i] cos - x[i + D/2] sin        y[i + D/2] = x[i + D/2] cos + x[i] sin      (sign +1)
//   backward: the same kernel with sign -1 (the inverse rotation), adding into dx
// cos and sin come from a table built on the host exactly as Ops/Rope.cs builds its own (inv_freq
// and the angle rounded through float32, cos and sin in double then rounded), so the GPU rotates by
// the CPU's very numbers and the only rounding difference is in the two products.
// Positions are checked on the host (a position past the table would read past it on the GPU).
// Launchers take device views (a device-resident step uploads one table per (theta, D) and calls
// them without host round trips); Host.* (upload, run, download) is for the tests and `grpo check`.
// Tests: Grpo.Tests/Compute/ElementKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static class RopeKernels
{
    public static void RopeKernel(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<int> positions,
        ArrayView<float> cos, ArrayView<float> sin, int heads, int half, float sign, int accumulate)
    {
        int row = i / (heads * half), within = i % (heads * half);
        int h = within / half, k = within % half;
        long start = ((long)row * heads + h) * 2 * half;
        long tableAt = (long)positions[row] * half + k;
        float c = cos[tableAt], s = sign * sin[tableAt];
        float first = x[start + k], second = x[start + k + half];
        float rotatedFirst = first * c - second * s;
        float rotatedSecond = second * c + first * s;
        if (accumulate != 0)
        {
            y[start + k] += rotatedFirst;
            y[start + k + half] += rotatedSecond;
        }
        else
        {
            y[start + k] = rotatedFirst;
            y[start + k + half] = rotatedSecond;
        }
    }

    /// <summary>cos and sin of p * theta^(-2i/D) for p &lt; positions, i &lt; D/2, stored [p * D/2 + i], as Ops/Rope.cs computes them.</summary>
    public static (float[] Cos, float[] Sin) Table(float theta, int headDim, int positions) =>
        Grpo.Ops.Op.CosSinTable(theta, headDim, positions);

    /// <summary>y = rotate(x) (sign +1), or y += rotate back(x) (sign -1, accumulate: the backward). x, y (rows, heads, D).</summary>
    public static void Rotate(Device device, ArrayView<float> x, ArrayView<float> y, ArrayView<int> positions, ArrayView<float> cos,
        ArrayView<float> sin, int rows, int heads, int headDim, float sign, bool accumulate)
    {
        if (x.Length != (long)rows * heads * headDim || y.Length != x.Length || positions.Length != rows || headDim % 2 != 0 || cos.Length != sin.Length)
            throw new ArgumentException($"rope: x {x.Length}, y {y.Length}, {positions.Length} positions for ({rows}, {heads}, {headDim})");
        if (x.Length == 0) return;
        device.Kernels.Get("rope", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, float, int>(RopeKernel))
            ((int)(x.Length / 2), x, y, positions, cos, sin, heads, headDim / 2, sign, accumulate ? 1 : 0);
    }

    /// <summary>Host round trips (tests, `grpo check`): y = Rope(x) and dx = dxStart + its backward of dy.</summary>
    public static class Host
    {
        public static (float[] Y, float[] Dx) Run(Device device, float[] x, int rows, int heads, int headDim, int[] positions, float theta,
            float[] dy, float[] dxStart)
        {
            int maxPosition = 0;
            foreach (int p in positions)
            {
                if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"Rope: position {p} is negative");
                maxPosition = Math.Max(maxPosition, p);
            }
            var (cos, sin) = Table(theta, headDim, maxPosition + 1);
            using var deviceX = device.UploadToPool<float>(x);
            using var y = device.Zeros<float>(x.Length);
            using var devicePositions = device.UploadToPool<int>(positions);
            using var deviceCos = device.UploadToPool<float>(cos);
            using var deviceSin = device.UploadToPool<float>(sin);
            using var deviceDy = device.UploadToPool<float>(dy);
            using var dx = device.UploadToPool<float>(dxStart);
            Rotate(device, deviceX.View, y.View, devicePositions.View, deviceCos.View, deviceSin.View, rows, heads, headDim, 1f, accumulate: false);
            Rotate(device, deviceDy.View, dx.View, devicePositions.View, deviceCos.View, deviceSin.View, rows, heads, headDim, -1f, accumulate: true);
            return (Device.DownloadArray<float>(y.View), Device.DownloadArray<float>(dx.View));
        }
    }
}
