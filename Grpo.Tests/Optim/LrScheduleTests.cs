// Learning-rate schedule values at chosen steps, worked out by hand.
using Grpo.Optim;

namespace Grpo.Tests.Optim;

public class LrScheduleTests
{
    [Fact]
    public void WarmupThenCosine()
    {
        // max 1, min 0.1, warm-up 10, total 110:
        //   step 0 -> 1 * 1/10 = 0.1; step 4 -> 5/10 = 0.5; step 9 -> 1 (warm-up ends at the peak)
        //   step 10 -> progress 0 -> 1; step 60 -> progress 0.5 -> 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55
        //   step 110 and step 500 -> progress 1 -> 0.1
        var schedule = LrSchedule.WarmupCosine(maxLr: 1f, minLr: 0.1f, warmupSteps: 10, totalSteps: 110);
        Assert.Equal(0.1f, schedule.At(0), 1e-6f);
        Assert.Equal(0.5f, schedule.At(4), 1e-6f);
        Assert.Equal(1f, schedule.At(9), 1e-6f);
        Assert.Equal(1f, schedule.At(10), 1e-6f);
        Assert.Equal(0.55f, schedule.At(60), 1e-6f);
        Assert.Equal(0.1f, schedule.At(110), 1e-6f);
        Assert.Equal(0.1f, schedule.At(500), 1e-6f);
    }

    [Fact]
    public void ConstantWithAndWithoutWarmup()
    {
        // lr 0.01 with 4 warm-up steps: 0.0025, 0.005, 0.0075, 0.01, then 0.01 forever.
        var warm = LrSchedule.Constant(0.01f, warmupSteps: 4);
        Assert.Equal(0.0025f, warm.At(0), 1e-7f);
        Assert.Equal(0.0075f, warm.At(2), 1e-7f);
        Assert.Equal(0.01f, warm.At(3), 1e-7f);
        Assert.Equal(0.01f, warm.At(1000), 1e-7f);
        Assert.Equal(0.01f, LrSchedule.Constant(0.01f).At(0));
    }
}
