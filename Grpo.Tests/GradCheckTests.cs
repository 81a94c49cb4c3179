// Gradient checks (GradCheck.cs) for MatMul and the element-wise ops, as FsCheck properties over
// random small shapes and values.
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Ops;

namespace Grpo.Tests;

public class GradCheckTests
{
    [Property(MaxTest = 30)]
    public void MatMul(bool transposeA, bool transposeB, bool sharedB, int seed)
    {
        var rng = new Random(seed);
        int batch = rng.Next(1, 3), m = rng.Next(1, 5), k = rng.Next(1, 5), n = rng.Next(1, 5);
        var a = GradCheck.Random(rng, 1, transposeA ? [batch, k, m] : [batch, m, k]);
        var b = GradCheck.Random(rng, 1, sharedB ? (transposeB ? [n, k] : [k, n]) : (transposeB ? [batch, n, k] : [batch, k, n]));
        GradCheck.AssertOk(GradCheck.Check(x => Op.MatMul(x[0], x[1], transposeA, transposeB), [a, b], seed));
    }

    [Property(MaxTest = 20)]
    public void AddSubMulWithBroadcast(bool broadcast, int seed)
    {
        var rng = new Random(seed);
        int rows = rng.Next(1, 4), cols = rng.Next(1, 5);
        var a = GradCheck.Random(rng, 1, rows, cols);
        var b = broadcast ? GradCheck.Random(rng, 1, cols) : GradCheck.Random(rng, 1, rows, cols);
        GradCheck.AssertOk(GradCheck.Check(x => Op.Add(x[0], x[1]), [a, b], seed));
        GradCheck.AssertOk(GradCheck.Check(x => Op.Sub(x[0], x[1]), [a, b], seed));
        GradCheck.AssertOk(GradCheck.Check(x => Op.Mul(x[0], x[1]), [a, b], seed));
    }

    [Property(MaxTest = 20)]
    public void ScaleExpLog(int seed)
    {
        var rng = new Random(seed);
        var a = GradCheck.Random(rng, 1, rng.Next(1, 4), rng.Next(1, 4));
        GradCheck.AssertOk(GradCheck.Check(x => Op.Scale(x[0], -1.5f), [a], seed));
        GradCheck.AssertOk(GradCheck.Check(x => Op.Exp(x[0]), [a], seed));
        var positive = Tensor.Parameter(a.Data.Select(v => 0.5f + Math.Abs(v)).ToArray(), a.Shape);
        GradCheck.AssertOk(GradCheck.Check(x => Op.Log(x[0]), [positive], seed, h: 1e-3));
    }

    [Fact]
    public void ExpAndLogByHand()
    {
        // exp(ln 2) = 2, and d/dx e^x at ln 2 is also 2; d/dx ln x at 4 is 1/4.
        var x = Tensor.Parameter([MathF.Log(2f)]);
        var y = Op.Exp(x);
        Autograd.Backward(y);
        Assert.Equal(2f, y.Data[0], 5);
        Assert.Equal(2f, x.Grad![0], 5);
        var z = Tensor.Parameter([4f]);
        Autograd.Backward(Op.Log(z));
        Assert.Equal(0.25f, z.Grad![0], 6);
    }
}
