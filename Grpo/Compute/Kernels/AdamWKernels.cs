// The CUDA port of Optim/AdamW.cs's update, one thread per parameter value (torch.optim.AdamW's
// single-tensor arithmetic, as the CPU does it):
//   p *= 1 - lr * wd                            (only where decay applies: tensors of rank >= 2)
//   m += (1 - beta1) * (g - m)                  (PyTorch's lerp form of beta1 m + (1 - beta1) g)
//   v  = beta2 v + (1 - beta2) g^2
//   p += -(lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// The step's scalars are formed on the host in double and rounded to float exactly as AdamW.Step
// forms them (AdamWScalars.For), so the kernel repeats the CPU's float arithmetic; the GPU may fuse a
// multiply and an add into one FMA, so p, m and v agree to about one rounding, not bit for bit.
// Launchers take device views (a device-resident optimizer keeps p, g, m, v on the device and calls
// Update per tensor); Host.Step runs a whole AdamW step of a host AdamW through the kernel.
// Tests: Grpo.Tests/Compute/TrainingKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using Grpo.Optim;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

/// <summary>The per-step scalars of AdamW in float, as AdamW.Step forms them.</summary>
public struct AdamWScalars
{
    public float StepSize, DecayFactor, Correction2Sqrt, Beta2, OneMinusBeta1, OneMinusBeta2, Eps;

    /// <summary>The scalars of step t (counted from 1) of optimizer's hyperparameters.</summary>
    public static AdamWScalars For(AdamW optimizer, int step) => new()
    {
        StepSize = (float)(optimizer.LearningRate / (1 - Math.Pow(optimizer.Beta1, step))),
        DecayFactor = (float)(1 - optimizer.LearningRate * optimizer.WeightDecay),
        Correction2Sqrt = (float)Math.Sqrt(1 - Math.Pow(optimizer.Beta2, step)),
        Beta2 = (float)optimizer.Beta2,
        OneMinusBeta1 = (float)(1 - optimizer.Beta1),
        OneMinusBeta2 = (float)(1 - optimizer.Beta2),
        Eps = (float)optimizer.Eps,
    };
}

public static class AdamWKernels
{
    public static void AdamWKernel(Index1D i, ArrayView<float> parameter, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v,
        AdamWScalars s, int decay)
    {
        float p = parameter[i];
        if (decay != 0) p *= s.DecayFactor;
        float g = grad[i];
        float mi = m[i] + s.OneMinusBeta1 * (g - m[i]);
        float vi = s.Beta2 * v[i] + s.OneMinusBeta2 * (g * g);
        float denominator = XMath.Sqrt(vi) / s.Correction2Sqrt + s.Eps;
        parameter[i] = p + -s.StepSize * mi / denominator;
        m[i] = mi;
        v[i] = vi;
    }

    /// <summary>One AdamW update of one tensor: parameter, grad, m, v of one length; decay for rank >= 2 tensors.</summary>
    public static void Update(Device device, ArrayView<float> parameter, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v,
        AdamWScalars scalars, bool decay)
    {
        if (grad.Length != parameter.Length || m.Length != parameter.Length || v.Length != parameter.Length)
            throw new ArgumentException($"adamw: parameter {parameter.Length}, grad {grad.Length}, m {m.Length}, v {v.Length}");
        if (parameter.Length == 0) return;
        device.Kernels.Get("adamw", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamWScalars, int>(AdamWKernel))
            ((int)parameter.Length, parameter, grad, m, v, scalars, decay ? 1 : 0);
    }

    /// <summary>Host round trips (tests, `grpo check`).</summary>
    public static class Host
    {
        /// <summary>AdamW.Step of optimizer with its arithmetic on the device: each slot's p, m, v go up, are updated, come back.</summary>
        public static void Step(Device device, AdamW optimizer)
        {
            optimizer.StepCount++;
            var scalars = AdamWScalars.For(optimizer, optimizer.StepCount);
            foreach (var slot in optimizer.Slots)
            {
                var grad = slot.Value.Grad;
                if (grad is null) continue;   // as on the CPU: a parameter with no gradient is skipped
                using var parameter = device.UploadToPool<float>(slot.Value.Data);
                using var deviceGrad = device.UploadToPool<float>(grad);
                using var m = device.UploadToPool<float>(slot.M.Data);
                using var v = device.UploadToPool<float>(slot.V.Data);
                Update(device, parameter.View, deviceGrad.View, m.View, v.View, scalars, slot.Decay && optimizer.WeightDecay != 0);
                parameter.Download(slot.Value.Data);
                m.Download(slot.M.Data);
                v.Download(slot.V.Data);
            }
        }
    }
}
