// Gradient checking: the analytic gradient of every op against central finite differences.
//
// The op's output y is reduced to a scalar L = sum_i w_i * y_i with fixed random weights w, so one
// backward pass checks the whole Jacobian in a random direction. For each checked input element
// x_j, (L(x_j + h) - L(x_j - h)) / 2h is formed in float64 from the float32 forward, and compared with
// the analytic dL/dx_j: |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
// Because the forward is float32, h is large (1e-2 by default) and rtol is a few 1e-2; an op with a
// wrong backward is off by O(1), far outside that.
using Grpo.Ops;

namespace Grpo.Tests;

public static class GradCheck
{
    /// <summary>Returns null when every checked gradient agrees, else a line naming the first mismatch.</summary>
    public static string? Check(Func<Tensor[], Tensor> f, Tensor[] inputs, int seed = 0, double h = 1e-2,
        double rtol = 3e-2, double atol = 2e-3, int maxPerInput = 40, int[]? checkInputs = null)
    {
        var rng = new Random(seed);
        foreach (var x in inputs) x.ZeroGrad();
        var y = f(inputs);
        var weights = new float[y.Size];
        for (int i = 0; i < weights.Length; i++) weights[i] = (float)(rng.NextDouble() * 2 - 1);
        Autograd.Backward(y, weights);

        double Loss()
        {
            using var _ = Autograd.NoGrad();
            var out_ = f(inputs);
            double sum = 0;
            for (int i = 0; i < weights.Length; i++) sum += (double)weights[i] * out_.Data[i];
            return sum;
        }

        for (int t = 0; t < inputs.Length; t++)
        {
            var x = inputs[t];
            if (!x.RequiresGrad || (checkInputs != null && !checkInputs.Contains(t))) continue;
            var analytic = x.Grad ?? new float[x.Size];
            var indices = Enumerable.Range(0, x.Size).OrderBy(_ => rng.Next()).Take(maxPerInput);
            foreach (int j in indices)
            {
                float saved = x.Data[j];
                x.Data[j] = (float)(saved + h);
                double plus = Loss();
                x.Data[j] = (float)(saved - h);
                double minus = Loss();
                x.Data[j] = saved;
                double numeric = (plus - minus) / (2 * h);
                double a = analytic[j];
                if (!(Math.Abs(a - numeric) <= atol + rtol * Math.Max(Math.Abs(a), Math.Abs(numeric))))
                    return $"input {t} {x} element {j}: analytic {a:G6}, numeric {numeric:G6}";
            }
        }
        return null;
    }

    public static Tensor Random(Random rng, float scale, params int[] shape)
    {
        var data = new float[Tensor.SizeOf(shape)];
        for (int i = 0; i < data.Length; i++) data[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return Tensor.Parameter(data, shape);
    }

    public static void AssertOk(string? failure) => Assert.True(failure == null, failure);
}
