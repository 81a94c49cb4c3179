using Grpo.Ops;

namespace Grpo.Tests;

public class AutogradTests
{
    [Fact]
    public void TensorUsedTwiceGetsTheSumOfBothGradients()
    {
        // y = x * x (x used twice), so dy/dx = x + x = 2x = 6 at x = 3.
        var x = Tensor.Parameter([3f]);
        var y = Op.Mul(x, x);
        Autograd.Backward(y);
        Assert.Equal(6f, x.Grad![0]);
    }

    [Fact]
    public void DiamondGraphAccumulates()
    {
        // z = (2x) + (x * x) at x = 5: dz/dx = 2 + 2x = 12.
        var x = Tensor.Parameter([5f]);
        var z = Op.Add(Op.Scale(x, 2f), Op.Mul(x, x));
        Autograd.Backward(z);
        Assert.Equal(12f, x.Grad![0]);
    }

    [Fact]
    public void GradientsAccumulateAcrossBackwardCallsUntilZeroed()
    {
        var x = Tensor.Parameter([1f, 2f], 2);
        Autograd.Backward(Op.Mul(x, new Tensor([3f, 4f], 2)), [1f, 1f]);
        Autograd.Backward(Op.Mul(x, new Tensor([3f, 4f], 2)), [1f, 1f]);
        Assert.Equal([6f, 8f], x.Grad!);
        x.ZeroGrad();
        Assert.Equal([0f, 0f], x.Grad!);
    }

    [Fact]
    public void NoGradScopeRecordsNothing()
    {
        var x = Tensor.Parameter([1f, 2f], 2);
        Tensor y;
        using (Autograd.NoGrad())
        {
            y = Op.Exp(x);
            Assert.False(Autograd.IsRecording);
        }
        Assert.True(Autograd.IsRecording);
        Assert.False(y.RequiresGrad);
        Assert.Null(y.BackwardFn);
        Assert.Empty(y.Parents);
    }

    [Fact]
    public void TopologicalOrderPutsInputsFirst()
    {
        var x = Tensor.Parameter([1f]);
        var a = Op.Exp(x);
        var b = Op.Mul(a, x);
        var c = Op.Add(b, a);
        var order = Autograd.TopologicalOrder(c);
        Assert.True(order.IndexOf(x) < order.IndexOf(a));
        Assert.True(order.IndexOf(a) < order.IndexOf(b));
        Assert.True(order.IndexOf(b) < order.IndexOf(c));
    }

    [Fact]
    public void ReshapeSharesDataAndPassesGradients()
    {
        var x = Tensor.Parameter([1f, 2f, 3f, 4f, 5f, 6f], 2, 3);
        var r = x.Reshape(3, -1);
        Assert.Equal([3, 2], r.Shape);
        Autograd.Backward(Op.Scale(r, 2f), [1f, 1f, 1f, 1f, 1f, 1f]);
        Assert.All(x.Grad!, g => Assert.Equal(2f, g));
    }

    [Fact]
    public void DeepChainDoesNotOverflowTheStack()
    {
        var x = Tensor.Parameter([1f]);
        var y = x;
        for (int i = 0; i < 20000; i++) y = Op.Scale(y, 1f);
        Autograd.Backward(y);
        Assert.Equal(1f, x.Grad![0]);
    }
}
