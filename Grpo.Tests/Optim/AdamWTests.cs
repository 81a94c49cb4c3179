// AdamW against hand-worked steps (the torch.optim.AdamW update), and the no-decay rule for rank-1 tensors.
using FsCheck.Xunit;
using Grpo.Optim;

namespace Grpo.Tests.Optim;

public class AdamWTests
{
    [Fact]
    public void OneStepByHand()
    {
        // p = 1, g = 0.5, lr = 0.1, betas (0.9, 0.999), eps = 1e-8, weight decay 0.1, step t = 1:
        //   decay:  p = 1 - 0.1 * 0.1 * 1 = 0.99
        //   m = 0.1 * 0.5 = 0.05           m_hat = 0.05 / (1 - 0.9)    = 0.5
        //   v = 0.001 * 0.25 = 0.00025     v_hat = 0.00025 / (1 - 0.999) = 0.25, sqrt = 0.5
        //   p = 0.99 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.99 - 0.1 = 0.89
        var weight = Tensor.Parameter([1f], 1, 1);
        var adam = new AdamW([("w", weight)], learningRate: 0.1f, weightDecay: 0.1f);
        weight.GradOrCreate()[0] = 0.5f;
        adam.Step();
        Assert.Equal(0.89f, weight.Data[0], 1e-6f);
        Assert.Equal(0.05f, adam.Slots[0].M.Data[0], 1e-7f);
        Assert.Equal(0.00025f, adam.Slots[0].V.Data[0], 1e-9f);
        Assert.Equal(1, adam.StepCount);
    }

    [Fact]
    public void SecondStepByHand()
    {
        // No decay, lr 0.1, p = 0, gradients 1 then -1:
        //   t=1: m = 0.1, v = 0.001; m_hat = 1, v_hat = 1 -> p = -0.1 * 1 / (1 + 1e-8) = -0.1
        //   t=2: m = 0.09 - 0.1 = -0.01, v = 0.000999 + 0.001 = 0.001999
        //        m_hat = -0.01 / 0.19 = -0.0526316, v_hat = 0.001999 / 0.001999 = 1
        //        p = -0.1 + 0.1 * 0.0526316 = -0.0947368
        var weight = Tensor.Parameter([0f], 1, 1);
        var adam = new AdamW([("w", weight)], learningRate: 0.1f, weightDecay: 0f);
        weight.GradOrCreate()[0] = 1f;
        adam.Step();
        Assert.Equal(-0.1f, weight.Data[0], 1e-6f);
        weight.Grad![0] = -1f;
        adam.Step();
        Assert.Equal(-0.0947368f, weight.Data[0], 1e-6f);
    }

    [Fact]
    public void NoDecayOnRankOneTensors()
    {
        // With a zero gradient the Adam part is 0 / (0 + eps) = 0, so only decay can move a value:
        // the matrix goes 2 -> 2 * (1 - 0.5 * 0.1) = 1.9, the vector (a norm weight or bias) stays 2.
        var matrix = Tensor.Parameter([2f, 2f], 1, 2);
        var vector = Tensor.Parameter([2f, 2f], 2);
        var adam = new AdamW([("w", matrix), ("norm", vector)], learningRate: 0.5f, weightDecay: 0.1f);
        matrix.GradOrCreate(); vector.GradOrCreate();
        adam.Step();
        Assert.Equal([1.9f, 1.9f], matrix.Data);
        Assert.Equal([2f, 2f], vector.Data);
        Assert.True(adam.Slots[0].Decay);
        Assert.False(adam.Slots[1].Decay);
    }

    [Fact]
    public void ParameterWithoutGradientIsSkipped()
    {
        var weight = Tensor.Parameter([3f], 1, 1);
        var adam = new AdamW([("w", weight)], learningRate: 0.5f, weightDecay: 0.1f);
        adam.Step();
        Assert.Equal(3f, weight.Data[0]);
    }

    /// <summary>The update is element-wise, so a 37-value matrix (two 16-wide vectors and a tail of 5)
    /// takes, bit for bit, the steps that 37 one-value matrices take one at a time.</summary>
    [Property(MaxTest = 20)]
    public bool WholeTensorEqualsOneValueAtATime(int seed)
    {
        const int size = 37;
        var rng = new Random(seed);
        var values = Enumerable.Range(0, size).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
        var matrix = Tensor.Parameter((float[])values.Clone(), 1, size);
        var singles = values.Select(v => Tensor.Parameter([v], 1, 1)).ToArray();
        var whole = new AdamW([("m", matrix)], learningRate: 0.01, weightDecay: 0.1);
        var apart = new AdamW(singles.Select((t, i) => ($"s{i}", t)), learningRate: 0.01, weightDecay: 0.1);
        for (int step = 0; step < 3; step++)
        {
            for (int i = 0; i < size; i++)
            {
                float g = (float)rng.NextDouble() * 2 - 1;
                matrix.GradOrCreate()[i] = g;
                singles[i].GradOrCreate()[0] = g;
            }
            whole.Step();
            apart.Step();
        }
        return Enumerable.Range(0, size).All(i => matrix.Data[i] == singles[i].Data[0]);
    }
}
