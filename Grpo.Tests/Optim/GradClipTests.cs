// Global-norm gradient clipping by hand, and the law that the clipped norm never exceeds the limit.
using FsCheck;
using FsCheck.Xunit;
using Grpo.Optim;

namespace Grpo.Tests.Optim;

public class GradClipTests
{
    [Fact]
    public void ClipsThreeFourToUnitNorm()
    {
        // [3, 4] has norm 5; scaled by 1 / 5 it becomes [0.6, 0.8] (PyTorch's 1e-6 moves the 7th digit).
        var a = Tensor.Parameter([0f], 1);
        var b = Tensor.Parameter([0f], 1);
        a.GradOrCreate()[0] = 3; b.GradOrCreate()[0] = 4;
        float norm = GradClip.ClipGlobalNorm([a, b], 1f);
        Assert.Equal(5f, norm, 1e-6f);
        Assert.Equal(0.6f, a.Grad![0], 1e-5f);
        Assert.Equal(0.8f, b.Grad![0], 1e-5f);
    }

    [Fact]
    public void SmallGradientsAreLeftAlone()
    {
        var a = Tensor.Parameter([0f, 0f], 2);
        a.GradOrCreate()[0] = 0.3f; a.Grad![1] = 0.4f;
        Assert.Equal(0.5f, GradClip.ClipGlobalNorm([a], 1f), 1e-6f);
        Assert.Equal([0.3f, 0.4f], a.Grad);
    }

    [Fact]
    public void NonFiniteNormLeavesGradientsForTheCallerToSee()
    {
        var a = Tensor.Parameter([0f, 0f], 2);
        a.GradOrCreate()[0] = float.NaN; a.Grad![1] = 1f;
        Assert.True(float.IsNaN(GradClip.ClipGlobalNorm([a], 1f)));
        Assert.Equal(1f, a.Grad[1]);
    }

    [Property(MaxTest = 50)]
    public bool ClippedNormIsAtMostTheLimit(int seed, PositiveInt limit)
    {
        var rng = new Random(seed);
        var p = GradCheck.Random(rng, 10, rng.Next(1, 6), rng.Next(1, 6));
        var g = p.GradOrCreate();
        for (int i = 0; i < g.Length; i++) g[i] = (float)(rng.NextDouble() * 20 - 10);
        float maxNorm = limit.Get / 10f;
        GradClip.ClipGlobalNorm([p], maxNorm);
        return GradClip.GlobalNorm([p]) <= maxNorm * (1 + 1e-5f);
    }
}
