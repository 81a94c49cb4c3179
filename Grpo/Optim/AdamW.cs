// AdamW: Adam with decoupled weight decay (Loshchilov and Hutter 2019), as torch.optim.AdamW does it.
//
// For each parameter p with gradient g, at step t (counted from 1):
//   p <- p - lr * wd * p                       (decoupled decay, before the Adam update; only where decay applies)
//   m <- beta1 * m + (1 - beta1) * g
//   v <- beta2 * v + (1 - beta2) * g^2
//   p <- p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)
// eps is added to sqrt(v_hat), as PyTorch does (not inside the square root).
// Weight decay is applied only to tensors of rank >= 2 (weight matrices and the embedding); norm
// weights and biases (rank 1) are not decayed, the usual GPT/Llama recipe.
// A parameter with no gradient this step is skipped entirely (PyTorch skips p.grad is None).
// State (m, v per parameter, the step count) is public so a checkpoint can save and restore it.
// Device: m and v live where their parameter lives; a parameter on a GPU is updated there by the
// same arithmetic in Compute/Kernels/AdamWKernels.cs (no host round trip).
// Tests: Grpo.Tests/Optim/AdamWTests.cs, and the ten PyTorch steps in Grpo.Tests/Model/PyTorchFixtureTests.cs.
using System.Runtime.Intrinsics;
using Grpo.Compute.Kernels;

namespace Grpo.Optim;

public sealed class AdamW
{
    /// <summary>One parameter and its moment estimates.</summary>
    public sealed record Slot(string Name, Tensor Value, Tensor M, Tensor V, bool Decay);

    // Hyperparameters are doubles, as Python floats are in PyTorch: 1 - 0.999 computed in float would
    // be 0.00099998713, not 0.001, and the ten-step comparison with PyTorch would drift by that.
    public double LearningRate { get; set; }
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }

    /// <summary>Number of steps taken so far (t of the last step).</summary>
    public int StepCount { get; set; }

    public IReadOnlyList<Slot> Slots { get; }

    public AdamW(IEnumerable<(string Name, Tensor Value)> parameters, double learningRate = 1e-3,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
    {
        if (learningRate < 0) throw new ArgumentOutOfRangeException(nameof(learningRate), "learning rate must be >= 0");
        if (beta1 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1), "beta1 must be in [0, 1)");
        if (beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta2), "beta2 must be in [0, 1)");
        LearningRate = learningRate;
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
        Slots = parameters
            .Select(p => new Slot(p.Name, p.Value, Tensor.Empty(p.Value.Device, p.Value.Shape, zero: true, persistent: true),
                Tensor.Empty(p.Value.Device, p.Value.Shape, zero: true, persistent: true), Decay: p.Value.Rank >= 2))
            .ToArray();
    }

    public void Step()
    {
        StepCount++;
        // Scalars in double, then float, in the order torch.optim.AdamW (single-tensor path) forms them.
        double correction1 = 1 - Math.Pow(Beta1, StepCount);
        float correction2Sqrt = (float)Math.Sqrt(1 - Math.Pow(Beta2, StepCount));
        float stepSize = (float)(LearningRate / correction1);
        float decayFactor = (float)(1 - LearningRate * WeightDecay);
        float beta2 = (float)Beta2, oneMinusBeta1 = (float)(1 - Beta1), oneMinusBeta2 = (float)(1 - Beta2), eps = (float)Eps;

        foreach (var slot in Slots)
        {
            if (slot.Value.IsOnDevice)
            {
                if (slot.Value.DeviceGrad is not { } deviceGrad) continue;
                AdamWKernels.Update(slot.Value.Device, slot.Value.View, deviceGrad.View, slot.M.View, slot.V.View,
                    AdamWScalars.For(this, StepCount), slot.Decay && WeightDecay != 0);
                continue;
            }
            var grad = slot.Value.Grad;
            if (grad is null) continue;
            var p = slot.Value.Data;
            var m = slot.M.Data;
            var v = slot.V.Data;
            float decay = slot.Decay && WeightDecay != 0 ? decayFactor : 1f;   // p * 1 is p exactly
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                // The same update as the loop below, sixteen values at a time and in the same order of
                // operations (no fused multiply-add), so both give the same bits.
                for (; i + 16 <= p.Length; i += 16)
                {
                    var g16 = Vector512.Create<float>(grad.AsSpan(i, 16));
                    var m16 = Vector512.Create<float>(m.AsSpan(i, 16));
                    var v16 = Vector512.Create<float>(v.AsSpan(i, 16));
                    var p16 = Vector512.Create<float>(p.AsSpan(i, 16)) * decay;
                    m16 += oneMinusBeta1 * (g16 - m16);
                    v16 = beta2 * v16 + oneMinusBeta2 * (g16 * g16);
                    var denominator16 = Vector512.Sqrt(v16) / correction2Sqrt + Vector512.Create(eps);
                    p16 += -stepSize * m16 / denominator16;
                    m16.CopyTo(m.AsSpan(i, 16));
                    v16.CopyTo(v.AsSpan(i, 16));
                    p16.CopyTo(p.AsSpan(i, 16));
                }
            }
            for (; i < p.Length; i++)
            {
                p[i] *= decay;
                float g = grad[i];
                m[i] += oneMinusBeta1 * (g - m[i]);              // PyTorch's lerp form of beta1 * m + (1 - beta1) * g
                v[i] = beta2 * v[i] + oneMinusBeta2 * (g * g);
                float denominator = MathF.Sqrt(v[i]) / correction2Sqrt + eps;
                p[i] += -stepSize * m[i] / denominator;
            }
        }
    }

    public void ZeroGrad()
    {
        foreach (var slot in Slots) slot.Value.ZeroGrad();
    }
}
