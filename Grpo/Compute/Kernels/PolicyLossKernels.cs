// The CUDA port of Rl/PolicyLoss.cs (DeepSeekMath eq. 3 as a loss), one thread per token (b, t):
//   ratio = e^(logp - oldLogp)
//   surrogate = min(ratio * A, clip(ratio, 1 - epsLow, 1 + epsHigh) * A)
//   term = -(surrogate - beta * k(logp, refLogp))            k = k1, k2 or the paper's k3 (eq. 4)
//   loss = sum_{b,t} w_{b,t} * term_{b,t}                    w from PolicyLoss.AggregationWeights
//   d loss / d logp = w * (-dsurrogate + beta * dk), dsurrogate = ratio * A on the unclipped branch, 0 on the clipped one
// In double, as the CPU computes it. The loss is summed by one thread, token after token in the CPU's
// order (B * T is at most tens of thousands). Padding (mask 0) contributes nothing.
// The weights are formed on the host (PolicyLoss.AggregationWeights: they depend only on the mask,
// which the generator produces on the host); the statistics the trainer logs (KL, ratio, clip
// fractions) can be summed on the host from the per-token ratio and kl outputs.
// XMath.Exp(double) is ILGPU's software exp on the GPU (no fast-math approximation).
// Launchers take device views (a device-resident step reads logp from TokenLogProbKernels' output
// and writes d loss / d logp for its backward, with no host round trip); Host.Run is for the tests
// and `grpo check`.
// Tests: Grpo.Tests/Compute/TrainingKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using Grpo.Rl;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

/// <summary>PolicyLossOptions as the kernel reads them: doubles of the float options, Kl 0/1/2 for k1/k2/k3.</summary>
public struct PolicyLossScalars
{
    public double EpsilonLow, EpsilonHigh, Beta;
    public int Kl, HasReference;

    public static PolicyLossScalars For(PolicyLossOptions options, bool hasReference) => new()
    {
        EpsilonLow = options.EpsilonLow, EpsilonHigh = options.EpsilonHigh, Beta = options.Beta,
        Kl = (int)options.Kl, HasReference = hasReference ? 1 : 0,
    };
}

public static class PolicyLossKernels
{
    public static void PolicyLossTokenKernel(Index1D k, ArrayView<float> logProbs, ArrayView<float> oldLogProbs, ArrayView<float> refLogProbs,
        ArrayView<float> advantages, ArrayView<float> mask, ArrayView<double> weights, PolicyLossScalars s,
        ArrayView<double> weightedTerms, ArrayView<double> gradient, ArrayView<float> ratio, ArrayView<float> kl)
    {
        if (mask[k] == 0f)
        {
            weightedTerms[k] = 0; gradient[k] = 0; ratio[k] = 0f; kl[k] = 0f;
            return;
        }
        double logp = logProbs[k], advantage = advantages[k];
        double r = XMath.Exp(logp - oldLogProbs[k]);
        double low = 1 - s.EpsilonLow, high = 1 + s.EpsilonHigh;
        double clippedRatio = r < low ? low : (r > high ? high : r);
        double unclippedObjective = r * advantage, clippedObjective = clippedRatio * advantage;
        bool isClipped = clippedObjective < unclippedObjective;
        double surrogate = isClipped ? clippedObjective : unclippedObjective;
        double dSurrogate = isClipped ? 0 : r * advantage;

        double klValue = 0, dKl = 0;
        if (s.HasReference != 0)
        {
            double refLogp = refLogProbs[k];
            double logRatio = logp - refLogp;
            if (s.Kl == 0) { klValue = logRatio; dKl = 1.0; }
            else if (s.Kl == 1) { klValue = 0.5 * logRatio * logRatio; dKl = logRatio; }
            else { klValue = ExpM1(refLogp - logp) - (refLogp - logp); dKl = -ExpM1(refLogp - logp); }
        }
        double term = -(surrogate - s.Beta * klValue);
        weightedTerms[k] = weights[k] * term;
        gradient[k] = weights[k] * (-dSurrogate + s.Beta * dKl);
        ratio[k] = (float)r;
        kl[k] = (float)klValue;
    }

    public static void PolicyLossSumKernel(Index1D i, ArrayView<double> weightedTerms, ArrayView<float> loss)
    {
        double total = 0;
        for (long k = 0; k < weightedTerms.Length; k++) total += weightedTerms[k];
        loss[0] = (float)total;
    }

    public static void PolicyLossBackwardKernel(Index1D k, ArrayView<double> gradient, float upstream, ArrayView<float> dLogProbs) =>
        dLogProbs[k] += (float)(upstream * gradient[k]);

    /// <summary>e^x - 1 as KlEstimators computes it: a short series near 0, where e^x - 1 would cancel.</summary>
    private static double ExpM1(double x) =>
        XMath.Abs(x) > 1e-5 ? XMath.Exp(x) - 1.0 : x + x * x / 2.0 + x * x * x / 6.0;

    /// <summary>Per token: weightedTerms, gradient (d loss / d logp), ratio and kl; then loss[0] = sum of weightedTerms.
    /// refLogProbs is read only when scalars.HasReference.</summary>
    public static void Forward(Device device, ArrayView<float> logProbs, ArrayView<float> oldLogProbs, ArrayView<float> refLogProbs,
        ArrayView<float> advantages, ArrayView<float> mask, ArrayView<double> weights, PolicyLossScalars scalars,
        ArrayView<double> weightedTerms, ArrayView<double> gradient, ArrayView<float> ratio, ArrayView<float> kl, ArrayView<float> loss)
    {
        long size = logProbs.Length;
        if (oldLogProbs.Length != size || advantages.Length != size || mask.Length != size || weights.Length != size ||
            weightedTerms.Length != size || gradient.Length != size || ratio.Length != size || kl.Length != size || loss.Length != 1 ||
            (scalars.HasReference != 0 && refLogProbs.Length != size))
            throw new ArgumentException($"policy loss: every per-token view must hold {size} values, and loss one");
        if (size == 0) { loss.MemSetToZero(); return; }
        device.Kernels.Get("policy_loss_token", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<double>, PolicyLossScalars, ArrayView<double>, ArrayView<double>, ArrayView<float>, ArrayView<float>>(PolicyLossTokenKernel))
            ((int)size, logProbs, oldLogProbs, refLogProbs, advantages, mask, weights, scalars, weightedTerms, gradient, ratio, kl);
        device.Kernels.Get("policy_loss_sum", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<double>, ArrayView<float>>(PolicyLossSumKernel))
            (1, weightedTerms, loss);
    }

    /// <summary>dLogProbs += (float)(upstream * gradient), the loss's backward.</summary>
    public static void Backward(Device device, ArrayView<double> gradient, float upstream, ArrayView<float> dLogProbs)
    {
        if (dLogProbs.Length != gradient.Length) throw new ArgumentException($"policy loss backward: {dLogProbs.Length} gradients for {gradient.Length} tokens");
        if (gradient.Length == 0) return;
        device.Kernels.Get("policy_loss_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<double>, float, ArrayView<float>>(PolicyLossBackwardKernel))
            ((int)gradient.Length, gradient, upstream, dLogProbs);
    }

    /// <summary>Host round trips (tests, `grpo check`): loss, d loss / d logp (for upstream 1), ratio and kl per token.</summary>
    public static class Host
    {
        public static (float Loss, float[] DLogProbs, float[] Ratio, float[] Kl) Run(Device device, float[] logProbs, int batch, float[] oldLogProbs,
            float[]? refLogProbs, float[] advantages, float[] mask, PolicyLossOptions options)
        {
            // The CPU op validates (finite values, 0/1 mask, options); the kernel trusts its inputs.
            int size = logProbs.Length;
            var weights = PolicyLoss.AggregationWeights(mask, batch, size / batch, options);
            using var deviceLogProbs = device.UploadToPool<float>(logProbs);
            using var deviceOld = device.UploadToPool<float>(oldLogProbs);
            using var deviceRef = device.UploadToPool<float>(refLogProbs ?? [0f]);
            using var deviceAdvantages = device.UploadToPool<float>(advantages);
            using var deviceMask = device.UploadToPool<float>(mask);
            using var deviceWeights = device.UploadToPool<double>(weights);
            using var weightedTerms = device.Zeros<double>(size);
            using var gradient = device.Zeros<double>(size);
            using var ratio = device.Zeros<float>(size);
            using var kl = device.Zeros<float>(size);
            using var loss = device.Zeros<float>(1);
            using var dLogProbs = device.Zeros<float>(size);
            Forward(device, deviceLogProbs.View, deviceOld.View, deviceRef.View, deviceAdvantages.View, deviceMask.View, deviceWeights.View,
                PolicyLossScalars.For(options, refLogProbs != null), weightedTerms.View, gradient.View, ratio.View, kl.View, loss.View);
            Backward(device, gradient.View, 1f, dLogProbs.View);
            return (Device.DownloadArray<float>(loss.View)[0], Device.DownloadArray<float>(dLogProbs.View),
                Device.DownloadArray<float>(ratio.View), Device.DownloadArray<float>(kl.View));
        }
    }
}
