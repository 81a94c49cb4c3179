// Learning-rate schedule: linear warm-up, then either constant or a cosine decay to a minimum
// (the GPT-2/nanoGPT recipe).
//
//   step < warmup:            lr = maxLr * (step + 1) / warmup      (steps count from 0; the first step is not 0)
//   constant after warm-up:   lr = maxLr
//   cosine after warm-up:     progress = (step - warmup) / (totalSteps - warmup), clamped to [0, 1]
//                             lr = minLr + (maxLr - minLr) * (1 + cos(pi * progress)) / 2
// Hand-worked (max 1, min 0.1, warm-up 10, total 110): step 0 -> 0.1, step 9 -> 1, step 60 (halfway)
// -> 0.55, step 110 and after -> 0.1. Tests: Grpo.Tests/Optim/LrScheduleTests.cs.
namespace Grpo.Optim;

public sealed record LrSchedule(float MaxLr, int WarmupSteps, bool Cosine, int TotalSteps, float MinLr)
{
    public static LrSchedule Constant(float lr, int warmupSteps = 0) => new(lr, warmupSteps, false, 0, lr);

    public static LrSchedule WarmupCosine(float maxLr, float minLr, int warmupSteps, int totalSteps)
    {
        if (totalSteps <= warmupSteps) throw new ArgumentException($"total steps ({totalSteps}) must exceed warm-up steps ({warmupSteps})");
        return new(maxLr, warmupSteps, true, totalSteps, minLr);
    }

    /// <summary>The learning rate for step (0-based).</summary>
    public float At(int step)
    {
        if (step < WarmupSteps) return MaxLr * (step + 1) / WarmupSteps;
        if (!Cosine) return MaxLr;
        double progress = Math.Clamp((double)(step - WarmupSteps) / (TotalSteps - WarmupSteps), 0, 1);
        return (float)(MinLr + (MaxLr - MinLr) * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }
}
