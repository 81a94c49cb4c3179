// RowGroup: the building block of the row kernels (reductions, softmax, RMSNorm, log-probs, the
// sampler). One group of Threads threads owns one row: each thread strides over the row's columns
// (thread i takes columns i, i + Threads, ...: neighbouring threads read neighbouring floats, so the
// loads coalesce), then the group combines its partials through shared memory in a tree of
// log2(Threads) steps, and every thread reads the result.
// The order of the additions differs from the CPU reference's SIMD sums, so results agree to
// rounding, not bit for bit; the tree is fixed, so a kernel gives the same bits on every run.
// Kernels using it allocate `SharedMemory.Allocate<float>(RowGroup.Threads)` and launch with
// RowGroup.Config(rows) (shared memory and barriers need an explicit group size).
// Tests: Grpo.Tests/Compute/RowKernelTests.cs, through every row kernel.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static class RowGroup
{
    /// <summary>Threads per row: four warps, enough to hide the latency of a V = 32000 row.</summary>
    public const int Threads = 128;

    /// <summary>One group of Threads threads per row.</summary>
    public static KernelConfig Config(int rows) => new(new Index1D(rows), new Index1D(Threads));

    /// <summary>The sum over the group of each thread's value; every thread gets it.</summary>
    public static float Sum(ArrayView<float> scratch, float value)
    {
        int i = Group.IdxX;
        scratch[i] = value;
        Group.Barrier();
        for (int stride = Threads / 2; stride > 0; stride /= 2)
        {
            if (i < stride) scratch[i] += scratch[i + stride];
            Group.Barrier();
        }
        float total = scratch[0];
        Group.Barrier();   // nobody may overwrite scratch[0] before everyone has read it
        return total;
    }

    /// <summary>The largest of each thread's value (-infinity stays -infinity); every thread gets it.</summary>
    public static float Max(ArrayView<float> scratch, float value)
    {
        int i = Group.IdxX;
        scratch[i] = value;
        Group.Barrier();
        for (int stride = Threads / 2; stride > 0; stride /= 2)
        {
            if (i < stride && scratch[i + stride] > scratch[i]) scratch[i] = scratch[i + stride];
            Group.Barrier();
        }
        float max = scratch[0];
        Group.Barrier();
        return max;
    }

    /// <summary>The index of the largest value over the group, the lowest index among equals (as Sampler.ArgMax).</summary>
    public static int ArgMax(ArrayView<float> values, ArrayView<int> indices, float value, int index)
    {
        int i = Group.IdxX;
        values[i] = value;
        indices[i] = index;
        Group.Barrier();
        for (int stride = Threads / 2; stride > 0; stride /= 2)
        {
            if (i < stride)
            {
                float other = values[i + stride];
                int otherIndex = indices[i + stride];
                if (other > values[i] || (other == values[i] && otherIndex < indices[i]))
                {
                    values[i] = other;
                    indices[i] = otherIndex;
                }
            }
            Group.Barrier();
        }
        int best = indices[0];
        Group.Barrier();
        return best;
    }
}
