// Helpers of the kernel tests: the CPU reference op run forward and backward through Autograd (the
// spec the kernels are checked against), and an element-wise closeness assertion.
using Grpo.Ops;

namespace Grpo.Tests.Compute;

internal static class KernelTestHelpers
{
    /// <summary>y = op(x) and the gradient dx = dxStart + (dy through op's backward), on the CPU.</summary>
    public static (float[] Y, float[] Dx) Reference(Func<Tensor, Tensor> op, Tensor x, float[] dy, float[]? dxStart = null)
    {
        var input = Tensor.Parameter((float[])x.Data.Clone(), x.Shape);
        if (dxStart != null) input.AccumulateGrad(dxStart);
        var y = op(input);
        Autograd.Backward(y, dy);
        return (y.Data, input.Grad ?? new float[x.Size]);
    }

    /// <summary>|expected - actual| <= tolerance * (1 + |expected|) at every element (same infinities pass).</summary>
    public static void AssertClose(float[] expected, float[] actual, float tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] == actual[i] || (float.IsNaN(expected[i]) && float.IsNaN(actual[i]))) continue;
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * (1 + Math.Abs(expected[i])),
                $"element {i}: expected {expected[i]}, got {actual[i]}");
        }
    }
}
