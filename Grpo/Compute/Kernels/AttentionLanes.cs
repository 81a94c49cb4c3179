// The warp-level pieces the v2 and v3 attention kernels share (AttentionKernels.cs, AttentionDecodeKernel.cs):
// a lane's share of one head row, held in registers, and sums and maxima over a warp's lanes.
// Tests: Grpo.Tests/Compute/AttentionKernelTests.cs, through the kernels.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static partial class AttentionKernels
{
    /// <summary>
    /// A lane's share of one head row x[at .. at + D): x[at + d] for d = lane + 32 c, c = 0 .. 7 (D <= 256),
    /// zero past D. Named fields, not an array, so that it lives in registers: a LocalMemory array indexed
    /// in a loop went to local memory in the PTX.
    /// </summary>
    private struct LaneRow
    {
        public float X0, X1, X2, X3, X4, X5, X6, X7;

        public static LaneRow Load(ArrayView<float> x, long at, int lane, int D) => new()
        {
            X0 = Get(x, at, lane, D), X1 = Get(x, at, lane + 32, D), X2 = Get(x, at, lane + 64, D), X3 = Get(x, at, lane + 96, D),
            X4 = Get(x, at, lane + 128, D), X5 = Get(x, at, lane + 160, D), X6 = Get(x, at, lane + 192, D), X7 = Get(x, at, lane + 224, D),
        };

        /// <summary>This lane's part of the dot product of the row with x[at .. at + D).</summary>
        public readonly float Dot(ArrayView<float> x, long at, int lane, int D) =>
            X0 * Get(x, at, lane, D) + X1 * Get(x, at, lane + 32, D) + X2 * Get(x, at, lane + 64, D) + X3 * Get(x, at, lane + 96, D) +
            X4 * Get(x, at, lane + 128, D) + X5 * Get(x, at, lane + 160, D) + X6 * Get(x, at, lane + 192, D) + X7 * Get(x, at, lane + 224, D);

        /// <summary>scale * row + weight * x[at .. at + D).</summary>
        public readonly LaneRow ScaleAdd(float scale, float weight, ArrayView<float> x, long at, int lane, int D) => new()
        {
            X0 = scale * X0 + weight * Get(x, at, lane, D), X1 = scale * X1 + weight * Get(x, at, lane + 32, D),
            X2 = scale * X2 + weight * Get(x, at, lane + 64, D), X3 = scale * X3 + weight * Get(x, at, lane + 96, D),
            X4 = scale * X4 + weight * Get(x, at, lane + 128, D), X5 = scale * X5 + weight * Get(x, at, lane + 160, D),
            X6 = scale * X6 + weight * Get(x, at, lane + 192, D), X7 = scale * X7 + weight * Get(x, at, lane + 224, D),
        };

        /// <summary>x[at .. at + D) = scale * row, or += when add.</summary>
        public readonly void Store(ArrayView<float> x, long at, int lane, int D, float scale, bool add)
        {
            Put(x, at, lane, D, scale * X0, add); Put(x, at, lane + 32, D, scale * X1, add);
            Put(x, at, lane + 64, D, scale * X2, add); Put(x, at, lane + 96, D, scale * X3, add);
            Put(x, at, lane + 128, D, scale * X4, add); Put(x, at, lane + 160, D, scale * X5, add);
            Put(x, at, lane + 192, D, scale * X6, add); Put(x, at, lane + 224, D, scale * X7, add);
        }

        /// <summary>
        /// row + the eight weighted rows of x over the lane's d. A d past D reads x's element D - 1 instead
        /// (in bounds, and its sum lands in a register Store never writes), so the loads carry no branch
        /// and a head of up to 64 issues all 16 of them together; only D > 64 branches, once, for the rest.
        /// </summary>
        public readonly LaneRow AddEight(ArrayView<float> x, int lane, int D, WeightedRows first, WeightedRows second)
        {
            var row = this;
            int last = D - 1;
            row.X0 += first.Sum(x, XMath.Min(lane, last)) + second.Sum(x, XMath.Min(lane, last));
            row.X1 += first.Sum(x, XMath.Min(lane + 32, last)) + second.Sum(x, XMath.Min(lane + 32, last));
            if (D > 64)
            {
                row.X2 += first.Sum(x, XMath.Min(lane + 64, last)) + second.Sum(x, XMath.Min(lane + 64, last));
                row.X3 += first.Sum(x, XMath.Min(lane + 96, last)) + second.Sum(x, XMath.Min(lane + 96, last));
                row.X4 += first.Sum(x, XMath.Min(lane + 128, last)) + second.Sum(x, XMath.Min(lane + 128, last));
                row.X5 += first.Sum(x, XMath.Min(lane + 160, last)) + second.Sum(x, XMath.Min(lane + 160, last));
                row.X6 += first.Sum(x, XMath.Min(lane + 192, last)) + second.Sum(x, XMath.Min(lane + 192, last));
                row.X7 += first.Sum(x, XMath.Min(lane + 224, last)) + second.Sum(x, XMath.Min(lane + 224, last));
            }
            return row;
        }

        private static float Get(ArrayView<float> x, long at, int d, int D) => d < D ? x[at + d] : 0f;

        private static void Put(ArrayView<float> x, long at, int d, int D, float value, bool add)
        {
            if (d < D) x[at + d] = add ? x[at + d] + value : value;
        }
    }

    /// <summary>The sum of value over the warp's lanes, in every lane.</summary>
    private static float WarpSum(float value)
    {
        for (int laneMask = Lanes / 2; laneMask > 0; laneMask /= 2) value += Warp.ShuffleXor(value, laneMask);
        return value;
    }

    /// <summary>The largest value over the warp's lanes, in every lane (-inf when all are -inf).</summary>
    private static float WarpMax(float value)
    {
        for (int laneMask = Lanes / 2; laneMask > 0; laneMask /= 2) value = XMath.Max(value, Warp.ShuffleXor(value, laneMask));
        return value;
    }

    /// <summary>Four keys' weights and where their rows start; Sum is w . x[at + d] over the four.</summary>
    private struct WeightedRows
    {
        public float W0, W1, W2, W3;
        public long At0, At1, At2, At3;

        public readonly float Sum(ArrayView<float> x, int d) => W0 * x[At0 + d] + W1 * x[At1 + d] + W2 * x[At2 + d] + W3 * x[At3 + d];
    }
}
