// The CUDA port of Ops/Elementwise.cs's forwards:
//   add:   y[i] = a[i] + b[i mod |b|]     (b the same size as a, or a suffix shape repeated, as a bias)
//   mul:   y[i] = a[i] * b[i mod |b|]     (also the backward products dy * b and dy * a)
//   scale: y[i] = s * a[i]                (also the backward of scale, and of add's sub: -dy)
//   exp:   y[i] = e^a[i]                  (XMath.Exp: ex2.approx on the GPU, relative error ~1e-7 here)
// Element-wise kernels are bound by memory: 2 or 3 floats moved per element, nothing reused. Two
// versions side by side, as in llm.c's dev/cuda; the launchers pick v2 when the views allow it.
//
// v1 (AddKernel, ...): one thread per element, auto-grouped, any lengths and offsets. Measured on the
//   H200 (`grpo bench --device cuda`, 16M floats): add 2.53 TB/s, scale 2.13, exp 2.09; PyTorch's
//   device copy 4.25.
// v2 (AddF4Kernel, ...): what shared/GPU.md found gives the biggest step: 16-byte loads and stores
//   (views cast to Float4, so ld.global.v4 / st.global.v4: a quarter of the memory instructions), in
//   a grid-stride loop over a fixed grid of a few waves of the SMs (GridStride), so each thread moves
//   several quads and the launch does not spawn a thread per element. Needs every length a multiple of
//   4 (for add and mul b's too, so a repeated bias still tiles whole quads) and every view starting
//   at a multiple of 16 bytes (pooled buffers do; a sub-view may not); otherwise the launcher runs v1.
//   Expected ~3.5-4 TB/s; measured on the H200 (`grpo bench --device cuda`): add 3996 GB/s, scale 3729,
//   exp 3726 (device copy 4252: 0.94x, 0.88x, 0.88x) against v1's 2526, 2122, 2092.
// In-place calls (y the same view as a, as Autograd's gradient accumulation does) are safe in both:
// every element (or quad) is read and then written by the same thread.
// Tests: Grpo.Tests/Compute/KernelTests.cs, ElementwiseKernelTests.cs, PtxCompileTests.cs; `grpo check`, `grpo bench`.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using Float4 = Grpo.Compute.Kernels.MatMulKernels.Float4;

namespace Grpo.Compute.Kernels;

public static class ElementwiseKernels
{
    public static void AddKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        y[i] = a[i] + b[i % (int)b.Length];

    public static void MulKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        y[i] = a[i] * b[i % (int)b.Length];

    public static void ScaleKernel(Index1D i, ArrayView<float> a, float s, ArrayView<float> y) =>
        y[i] = s * a[i];

    public static void ExpKernel(Index1D i, ArrayView<float> a, ArrayView<float> y) =>
        y[i] = XMath.Exp(a[i]);

    // v2: q runs over quads; b has |b| / 4 quads and repeats every that many (q itself when b is a's size).
    public static void AddF4Kernel(ArrayView<Float4> a, ArrayView<Float4> b, ArrayView<Float4> y)
    {
        int quads = (int)a.Length, bQuads = (int)b.Length, stride = Grid.DimX * Group.DimX;
        for (int q = Grid.GlobalIndex.X; q < quads; q += stride)
        {
            Float4 u = a[q], v = b[q < bQuads ? q : q % bQuads];
            y[q] = new Float4 { X = u.X + v.X, Y = u.Y + v.Y, Z = u.Z + v.Z, W = u.W + v.W };
        }
    }

    public static void MulF4Kernel(ArrayView<Float4> a, ArrayView<Float4> b, ArrayView<Float4> y)
    {
        int quads = (int)a.Length, bQuads = (int)b.Length, stride = Grid.DimX * Group.DimX;
        for (int q = Grid.GlobalIndex.X; q < quads; q += stride)
        {
            Float4 u = a[q], v = b[q < bQuads ? q : q % bQuads];
            y[q] = new Float4 { X = u.X * v.X, Y = u.Y * v.Y, Z = u.Z * v.Z, W = u.W * v.W };
        }
    }

    public static void ScaleF4Kernel(ArrayView<Float4> a, float s, ArrayView<Float4> y)
    {
        int quads = (int)a.Length, stride = Grid.DimX * Group.DimX;
        for (int q = Grid.GlobalIndex.X; q < quads; q += stride)
        {
            Float4 u = a[q];
            y[q] = new Float4 { X = s * u.X, Y = s * u.Y, Z = s * u.Z, W = s * u.W };
        }
    }

    public static void ExpF4Kernel(ArrayView<Float4> a, ArrayView<Float4> y)
    {
        int quads = (int)a.Length, stride = Grid.DimX * Group.DimX;
        for (int q = Grid.GlobalIndex.X; q < quads; q += stride)
        {
            Float4 u = a[q];
            y[q] = new Float4 { X = XMath.Exp(u.X), Y = XMath.Exp(u.Y), Z = XMath.Exp(u.Z), W = XMath.Exp(u.W) };
        }
    }

    /// <summary>y = a + b, b of a's size or a divisor of it (repeated); v2 where UsesVectorLoads allows.</summary>
    public static void Add(Device device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        Binary(device, "add", AddKernel, AddF4Kernel, a, b, y, allowVector: true);

    /// <summary>y = a * b, b of a's size or a divisor of it (repeated); v2 where UsesVectorLoads allows.</summary>
    public static void Mul(Device device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        Binary(device, "mul", MulKernel, MulF4Kernel, a, b, y, allowVector: true);

    /// <summary>y = s * a; v2 where UsesVectorLoads allows.</summary>
    public static void Scale(Device device, ArrayView<float> a, float s, ArrayView<float> y) =>
        RunScale(device, a, s, y, allowVector: true);

    /// <summary>y = e^a; v2 where UsesVectorLoads allows.</summary>
    public static void Exp(Device device, ArrayView<float> a, ArrayView<float> y) =>
        RunExp(device, a, y, allowVector: true);

    public static void LogKernel(Index1D i, ArrayView<float> a, ArrayView<float> y) => y[i] = XMath.Log(a[i]);

    public static void LogBackwardKernel(Index1D i, ArrayView<float> a, ArrayView<float> dy, ArrayView<float> da) => da[i] += dy[i] / a[i];

    /// <summary>y = ln a (one thread per element; XMath.Log is lg2.approx-based on the GPU).</summary>
    public static void Log(Device device, ArrayView<float> a, ArrayView<float> y)
    {
        if (a.Length != y.Length) throw new ArgumentException($"log: a has {a.Length} elements, y {y.Length}");
        if (a.Length == 0) return;
        device.Kernels.Get("log", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(LogKernel))((int)a.Length, a, y);
    }

    /// <summary>da += dy / a, the backward of log.</summary>
    public static void LogBackward(Device device, ArrayView<float> a, ArrayView<float> dy, ArrayView<float> da)
    {
        if (a.Length != dy.Length || a.Length != da.Length) throw new ArgumentException($"log backward: a {a.Length}, dy {dy.Length}, da {da.Length}");
        if (a.Length == 0) return;
        device.Kernels.Get("log_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(LogBackwardKernel))
            ((int)a.Length, a, dy, da);
    }

    /// <summary>Add, Mul, Scale and Exp with v1 whatever the views: for the benchmark's step from v1 to v2, and tests.</summary>
    public static void AddV1(Device device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        Binary(device, "add", AddKernel, AddF4Kernel, a, b, y, allowVector: false);

    public static void MulV1(Device device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        Binary(device, "mul", MulKernel, MulF4Kernel, a, b, y, allowVector: false);

    public static void ScaleV1(Device device, ArrayView<float> a, float s, ArrayView<float> y) =>
        RunScale(device, a, s, y, allowVector: false);

    public static void ExpV1(Device device, ArrayView<float> a, ArrayView<float> y) =>
        RunExp(device, a, y, allowVector: false);

    /// <summary>
    /// Whether these views can be read as Float4: each length a multiple of 4 and each view starting
    /// at a multiple of 16 bytes of its buffer (buffers start aligned: cudaMalloc gives 256 bytes;
    /// Cast&lt;Float4&gt; would otherwise round the start down).
    /// </summary>
    public static bool UsesVectorLoads(params ReadOnlySpan<ArrayView<float>> views)
    {
        foreach (var view in views)
            if (view.Length % 4 != 0 || ((IContiguousArrayView)view).IndexInBytes % 16 != 0) return false;
        return true;
    }

    /// <summary>Groups of v2's grid-stride loop.</summary>
    public const int VectorThreads = 256;

    /// <summary>At most this many waves of groups (each SM holding as many groups as its threads allow).</summary>
    public const int Waves = 4;

    /// <summary>v2's launch for `quads` quads: enough groups for one quad a thread, capped at Waves waves of the device.</summary>
    public static KernelConfig GridStride(Device device, long quads)
    {
        var accelerator = device.Accelerator;
        int threads = Math.Min(VectorThreads, accelerator.MaxNumThreadsPerGroup);
        long perWave = (long)accelerator.NumMultiprocessors * Math.Max(1, accelerator.MaxNumThreadsPerMultiprocessor / threads);
        long groups = Math.Min((quads + threads - 1) / threads, Waves * perWave);
        return new KernelConfig(new Index1D((int)Math.Max(1, groups)), new Index1D(threads));
    }

    private static void Binary(Device device, string name,
        Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> v1,
        Action<ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>> v2,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, bool allowVector)
    {
        CheckBinary(a, b, y, name);
        if (a.Length == 0) return;
        if (allowVector && UsesVectorLoads(a, b, y))
            device.Kernels.Get(name + "_f4", acc => acc.LoadStreamKernel(v2))
                (GridStride(device, a.Length / 4), a.Cast<Float4>(), b.Cast<Float4>(), y.Cast<Float4>());
        else
            device.Kernels.Get(name, acc => acc.LoadAutoGroupedStreamKernel(v1))((int)a.Length, a, b, y);
    }

    private static void RunScale(Device device, ArrayView<float> a, float s, ArrayView<float> y, bool allowVector)
    {
        CheckUnary(a, y, "scale");
        if (a.Length == 0) return;
        if (allowVector && UsesVectorLoads(a, y))
            device.Kernels.Get("scale_f4", acc => acc.LoadStreamKernel<ArrayView<Float4>, float, ArrayView<Float4>>(ScaleF4Kernel))
                (GridStride(device, a.Length / 4), a.Cast<Float4>(), s, y.Cast<Float4>());
        else
            device.Kernels.Get("scale", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float, ArrayView<float>>(ScaleKernel))
                ((int)a.Length, a, s, y);
    }

    private static void RunExp(Device device, ArrayView<float> a, ArrayView<float> y, bool allowVector)
    {
        CheckUnary(a, y, "exp");
        if (a.Length == 0) return;
        if (allowVector && UsesVectorLoads(a, y))
            device.Kernels.Get("exp_f4", acc => acc.LoadStreamKernel<ArrayView<Float4>, ArrayView<Float4>>(ExpF4Kernel))
                (GridStride(device, a.Length / 4), a.Cast<Float4>(), y.Cast<Float4>());
        else
            device.Kernels.Get("exp", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(ExpKernel))
                ((int)a.Length, a, y);
    }

    // A kernel that reads past a view ends the process on the CPU accelerator and corrupts memory on
    // the GPU, so sizes are checked on the host, where an exception can still be caught.
    private static void CheckBinary(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, string name)
    {
        CheckUnary(a, y, name);
        if (b.Length == 0 || a.Length % b.Length != 0)
            throw new ArgumentException($"{name}: b has {b.Length} elements, which do not tile a's {a.Length}");
    }

    private static void CheckUnary(ArrayView<float> a, ArrayView<float> y, string name)
    {
        if (y.Length != a.Length) throw new ArgumentException($"{name}: output has {y.Length} elements, input {a.Length}");
        if (a.Length > int.MaxValue) throw new ArgumentException($"{name}: {a.Length} elements is past one launch's 2^31");
    }
}
