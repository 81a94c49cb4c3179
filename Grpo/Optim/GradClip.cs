// Gradient clipping by global L2 norm (torch.nn.utils.clip_grad_norm_).
//
//   norm = sqrt(sum over all parameters and elements of g^2)
//   if norm > maxNorm: every g <- g * maxNorm / (norm + 1e-6)
// Returns the norm before clipping (what a training log reports). A non-finite norm (a NaN or
// infinite gradient somewhere) leaves the gradients untouched, so the caller can see it and skip
// the step instead of spreading the NaN into every parameter.
// On a GPU each gradient's sum of squares is formed there in fixed partial sums (ReduceKernels),
// which come back in one copy and are added in double; the scaling is a kernel in place.
// Hand-worked: grads [3, 4] have norm 5; clipped to 1 they become [0.6, 0.8]. Tests: Grpo.Tests/Optim/GradClipTests.cs.
using System.Numerics.Tensors;
using Grpo.Compute.Kernels;

namespace Grpo.Optim;

public static class GradClip
{
    public static float GlobalNorm(IEnumerable<Tensor> parameters)
    {
        double sumOfSquares = 0;
        var onDevice = new List<Tensor>();
        foreach (var p in parameters)
        {
            if (p.DeviceGrad != null) onDevice.Add(p);
            else if (p.Grad is { } g)
                foreach (var x in g) sumOfSquares += (double)x * x;
        }
        if (onDevice.Count > 0)
        {
            var device = onDevice[0].Device;
            using var partials = device.Pool.Rent<float>((long)onDevice.Count * ReduceKernels.SquareGroups);
            for (int i = 0; i < onDevice.Count; i++)
                ReduceKernels.SumOfSquares(device, onDevice[i].DeviceGrad!.View,
                    partials.View.SubView((long)i * ReduceKernels.SquareGroups, ReduceKernels.SquareGroups));
            foreach (var x in Compute.Device.DownloadArray<float>(partials.View)) sumOfSquares += x;
        }
        return (float)Math.Sqrt(sumOfSquares);
    }

    /// <summary>Scales all gradients down so their global norm is at most maxNorm; returns the norm before.</summary>
    public static float ClipGlobalNorm(IEnumerable<Tensor> parameters, float maxNorm)
    {
        if (maxNorm <= 0) throw new ArgumentOutOfRangeException(nameof(maxNorm), "maxNorm must be positive");
        var list = parameters as IReadOnlyCollection<Tensor> ?? parameters.ToArray();
        float norm = GlobalNorm(list);
        if (!float.IsFinite(norm) || norm <= maxNorm) return norm;
        // The 1e-6 matches PyTorch, so the clipped norm lands just under maxNorm.
        float scale = (float)(maxNorm / (norm + 1e-6));
        foreach (var p in list)
        {
            if (p.DeviceGrad is { } d) ElementwiseKernels.Scale(p.Device, d.View, scale, d.View);
            else if (p.Grad is { } g) TensorPrimitives.Multiply(g, scale, g);
        }
        return norm;
    }
}
