// The CUDA port of Ops/Silu.cs, one thread per element:
//   silu(x) = x * s(x), s = 1 / (1 + e^-x)          dx += dy * s * (1 + x * (1 - s))
//   SwiGlu(gate, up) = silu(gate) * up              dgate += dy * up * silu'(gate)    dup += dy * silu(gate)
// The sigmoid is recomputed in the backward (as on the CPU), so no activation is kept.
// XMath.Exp is ex2.approx on the GPU: agreement with the CPU is ~1e-6 relative.
// Launchers take device views (a device-resident step calls them without host round trips);
// Host.* (upload, run, download) is for the tests and `grpo check`.
// Tests: Grpo.Tests/Compute/ElementKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static class SiluKernels
{
    public static void SiluKernel(Index1D i, ArrayView<float> x, ArrayView<float> y)
    {
        float v = x[i];
        y[i] = v * Sigmoid(v);
    }

    public static void SiluBackwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx) =>
        dx[i] += dy[i] * SiluDerivative(x[i]);

    public static void SwiGluKernel(Index1D i, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> y)
    {
        float g = gate[i];
        y[i] = g * Sigmoid(g) * up[i];
    }

    /// <summary>wantGate / wantUp say which of dGate, dUp to add into (the other view is not touched).</summary>
    public static void SwiGluBackwardKernel(Index1D i, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> dy,
        ArrayView<float> dGate, ArrayView<float> dUp, int wantGate, int wantUp)
    {
        float g = gate[i];
        if (wantGate != 0) dGate[i] += dy[i] * up[i] * SiluDerivative(g);
        if (wantUp != 0) dUp[i] += dy[i] * g / (1f + XMath.Exp(-g));
    }

    private static float Sigmoid(float x) => 1f / (1f + XMath.Exp(-x));

    private static float SiluDerivative(float x)
    {
        float s = Sigmoid(x);
        return s * (1f + x * (1f - s));
    }

    public static void Silu(Device device, ArrayView<float> x, ArrayView<float> y)
    {
        Same(x, y, "silu");
        if (x.Length == 0) return;
        device.Kernels.Get("silu", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(SiluKernel))((int)x.Length, x, y);
    }

    public static void SiluBackward(Device device, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx)
    {
        Same(x, dy, "silu backward");
        Same(x, dx, "silu backward");
        if (x.Length == 0) return;
        device.Kernels.Get("silu_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(SiluBackwardKernel))
            ((int)x.Length, x, dy, dx);
    }

    public static void SwiGlu(Device device, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> y)
    {
        Same(gate, up, "swiglu");
        Same(gate, y, "swiglu");
        if (gate.Length == 0) return;
        device.Kernels.Get("swiglu", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(SwiGluKernel))
            ((int)gate.Length, gate, up, y);
    }

    /// <summary>dGate += ..., dUp += ...; pass an empty view for a gradient not wanted.</summary>
    public static void SwiGluBackward(Device device, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> dy,
        ArrayView<float> dGate, ArrayView<float> dUp)
    {
        Same(gate, up, "swiglu backward");
        Same(gate, dy, "swiglu backward");
        bool wantGate = dGate.Length > 0, wantUp = dUp.Length > 0;
        if (wantGate) Same(gate, dGate, "swiglu backward");
        if (wantUp) Same(gate, dUp, "swiglu backward");
        if (gate.Length == 0 || !(wantGate || wantUp)) return;
        // A gradient not wanted is never written; dy stands in for its view so the kernel has a valid argument.
        device.Kernels.Get("swiglu_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(SwiGluBackwardKernel))
            ((int)gate.Length, gate, up, dy, wantGate ? dGate : dy, wantUp ? dUp : dy, wantGate ? 1 : 0, wantUp ? 1 : 0);
    }

    private static void Same(ArrayView<float> a, ArrayView<float> b, string name)
    {
        if (a.Length != b.Length) throw new ArgumentException($"{name}: views of {a.Length} and {b.Length} elements");
        if (a.Length > int.MaxValue) throw new ArgumentException($"{name}: {a.Length} elements is past one launch's 2^31");
    }

    /// <summary>Host round trips (tests, `grpo check`).</summary>
    public static class Host
    {
        public static (float[] Y, float[] Dx) Silu(Device device, float[] x, float[] dy, float[] dxStart)
        {
            using var deviceX = device.UploadToPool<float>(x);
            using var y = device.Zeros<float>(x.Length);
            using var deviceDy = device.UploadToPool<float>(dy);
            using var dx = device.UploadToPool<float>(dxStart);
            SiluKernels.Silu(device, deviceX.View, y.View);
            SiluBackward(device, deviceX.View, deviceDy.View, dx.View);
            return (Device.DownloadArray<float>(y.View), Device.DownloadArray<float>(dx.View));
        }

        public static (float[] Y, float[] DGate, float[] DUp) SwiGlu(Device device, float[] gate, float[] up, float[] dy, float[] dGateStart, float[] dUpStart)
        {
            using var deviceGate = device.UploadToPool<float>(gate);
            using var deviceUp = device.UploadToPool<float>(up);
            using var y = device.Zeros<float>(gate.Length);
            using var deviceDy = device.UploadToPool<float>(dy);
            using var dGate = device.UploadToPool<float>(dGateStart);
            using var dUp = device.UploadToPool<float>(dUpStart);
            SiluKernels.SwiGlu(device, deviceGate.View, deviceUp.View, y.View);
            SwiGluBackward(device, deviceGate.View, deviceUp.View, deviceDy.View, dGate.View, dUp.View);
            return (Device.DownloadArray<float>(y.View), Device.DownloadArray<float>(dGate.View), Device.DownloadArray<float>(dUp.View));
        }
    }
}
