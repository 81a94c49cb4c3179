// The CUDA port of Ops/TokenLogProbs.cs and Ops/CrossEntropy.cs, which share one forward and one
// backward (a cross-entropy row loss is minus a token log-prob):
//   forward (one RowGroup per row):  lse_r = ln sum_j e^(x_rj),  logProb_r = x_r[t_r] - lse_r
//   cross-entropy:                   loss = sum_r w_r * (-logProb_r) / W,  W = sum_r w_r  (0 when W = 0)
//   backward (one RowGroup per row): dx_rj += c_r * (softmax(x_r)_j - [j == t_r])
//       token log-probs: c_r = -dy_r;  cross-entropy: c_r = dloss * w_r / W;  rows with c_r = 0 are skipped
// The loss sum runs in one thread in double, row after row, as the CPU sums it (rows of weight 0
// are left out, so a masked row's infinite loss cannot make it NaN); N is at most a few thousand rows.
// Targets are checked on the host (a target outside [0, V) would read past the row on the GPU).
// Launchers take device views (a device-resident step calls them without host round trips; W and
// dloss are host scalars because weights and the loss's upstream gradient come from the host);
// Host.* (upload, run, download) is for the tests and `grpo check`.
// Tests: Grpo.Tests/Compute/RowKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static class TokenLogProbKernels
{
    public static void TokenLogProbsKernel(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> logSumExps,
        ArrayView<float> logProbs, int vocab)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        int row = Grid.IdxX;
        long start = (long)row * vocab;
        float lse = SoftmaxKernels.RowLogSumExp(scratch, logits, start, vocab);
        if (Group.IdxX == 0)
        {
            logSumExps[row] = lse;
            logProbs[row] = logits[start + targets[row]] - lse;
        }
    }

    public static void SoftmaxMinusOneHotKernel(ArrayView<float> logits, ArrayView<float> logSumExps, ArrayView<int> targets,
        ArrayView<float> rowScales, float factor, ArrayView<float> dLogits, int vocab)
    {
        int row = Grid.IdxX;
        float coefficient = factor * rowScales[row];
        if (coefficient == 0f) return;
        long start = (long)row * vocab;
        float lse = logSumExps[row];
        int target = targets[row];
        for (int j = Group.IdxX; j < vocab; j += RowGroup.Threads)
        {
            float d = dLogits[start + j] + coefficient * XMath.Exp(logits[start + j] - lse);
            if (j == target) d -= coefficient;
            dLogits[start + j] = d;
        }
    }

    public static void WeightedLossKernel(Index1D i, ArrayView<float> logProbs, ArrayView<float> weights, double weightSum,
        ArrayView<float> loss)
    {
        double total = 0;
        for (int r = 0; r < logProbs.Length; r++)
            if (weights[r] != 0f) total += (double)weights[r] * -logProbs[r];
        loss[0] = weightSum == 0 ? 0f : (float)(total / weightSum);
    }

    /// <summary>logSumExps (rows) and logProbs (rows) of logits (rows, vocab) at targets (rows).</summary>
    public static void Forward(Device device, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> logSumExps,
        ArrayView<float> logProbs, int rows, int vocab)
    {
        CheckShapes(logits, targets, logSumExps, rows, vocab);
        if (logProbs.Length != rows) throw new ArgumentException($"token log-probs: {logProbs.Length} outputs for {rows} rows");
        if (rows == 0) return;
        device.Kernels.Get("token_log_probs", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int>(TokenLogProbsKernel))
            (RowGroup.Config(rows), logits, targets, logSumExps, logProbs, vocab);
    }

    /// <summary>dLogits += factor * rowScales_r * (softmax - onehot(target)) for every row.</summary>
    public static void Backward(Device device, ArrayView<float> logits, ArrayView<float> logSumExps, ArrayView<int> targets,
        ArrayView<float> rowScales, float factor, ArrayView<float> dLogits, int rows, int vocab)
    {
        CheckShapes(logits, targets, logSumExps, rows, vocab);
        if (rowScales.Length != rows || dLogits.Length != logits.Length)
            throw new ArgumentException($"token log-probs backward: {rowScales.Length} row scales and {dLogits.Length} gradients for ({rows}, {vocab})");
        if (rows == 0) return;
        device.Kernels.Get("softmax_minus_onehot", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, float, ArrayView<float>, int>(SoftmaxMinusOneHotKernel))
            (RowGroup.Config(rows), logits, logSumExps, targets, rowScales, factor, dLogits, vocab);
    }

    /// <summary>loss[0] = sum_r w_r * (-logProb_r) / weightSum (0 when weightSum is 0).</summary>
    public static void WeightedLoss(Device device, ArrayView<float> logProbs, ArrayView<float> weights, double weightSum, ArrayView<float> loss)
    {
        if (weights.Length != logProbs.Length || loss.Length != 1)
            throw new ArgumentException($"cross-entropy: {weights.Length} weights for {logProbs.Length} rows, loss of {loss.Length}");
        device.Kernels.Get("weighted_loss", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, double, ArrayView<float>>(WeightedLossKernel))
            (1, logProbs, weights, weightSum, loss);
    }

    private static void CheckShapes(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> logSumExps, int rows, int vocab)
    {
        if (logits.Length != (long)rows * vocab || targets.Length != rows || logSumExps.Length != rows)
            throw new ArgumentException($"token log-probs: logits {logits.Length}, targets {targets.Length}, lse {logSumExps.Length} for ({rows}, {vocab})");
    }

    /// <summary>Host round trips (tests, `grpo check`). Targets are checked here, before any kernel reads them.</summary>
    public static class Host
    {
        /// <summary>Op.TokenLogProbs: the log-probs (rows) and, given dy, dLogits = dStart + backward.</summary>
        public static (float[] LogProbs, float[] DLogits) TokenLogProbs(Device device, float[] logits, int[] targets, int vocab, float[] dy, float[] dStart)
        {
            CheckTargets(targets, vocab);
            int rows = targets.Length;
            using var deviceLogits = device.UploadToPool<float>(logits);
            using var deviceTargets = device.UploadToPool<int>(targets);
            using var lse = device.Zeros<float>(rows);
            using var logProbs = device.Zeros<float>(rows);
            using var deviceDy = device.UploadToPool<float>(dy);
            using var dLogits = device.UploadToPool<float>(dStart);
            Forward(device, deviceLogits.View, deviceTargets.View, lse.View, logProbs.View, rows, vocab);
            Backward(device, deviceLogits.View, lse.View, deviceTargets.View, deviceDy.View, -1f, dLogits.View, rows, vocab);
            return (Device.DownloadArray<float>(logProbs.View), Device.DownloadArray<float>(dLogits.View));
        }

        /// <summary>Op.CrossEntropy: the loss and, for dloss, dLogits = dStart + backward.</summary>
        public static (float Loss, float[] DLogits) CrossEntropy(Device device, float[] logits, int[] targets, float[]? weights, int vocab, float dLoss, float[] dStart)
        {
            CheckTargets(targets, vocab);
            int rows = targets.Length;
            weights ??= Enumerable.Repeat(1f, rows).ToArray();
            double weightSum = 0;
            foreach (float w in weights) weightSum += w;
            using var deviceLogits = device.UploadToPool<float>(logits);
            using var deviceTargets = device.UploadToPool<int>(targets);
            using var deviceWeights = device.UploadToPool<float>(weights);
            using var lse = device.Zeros<float>(rows);
            using var logProbs = device.Zeros<float>(rows);
            using var loss = device.Zeros<float>(1);
            using var dLogits = device.UploadToPool<float>(dStart);
            Forward(device, deviceLogits.View, deviceTargets.View, lse.View, logProbs.View, rows, vocab);
            WeightedLoss(device, logProbs.View, deviceWeights.View, weightSum, loss.View);
            if (weightSum != 0)
                Backward(device, deviceLogits.View, lse.View, deviceTargets.View, deviceWeights.View, (float)(dLoss / weightSum), dLogits.View, rows, vocab);
            return (Device.DownloadArray<float>(loss.View)[0], Device.DownloadArray<float>(dLogits.View));
        }

        private static void CheckTargets(int[] targets, int vocab)
        {
            for (int i = 0; i < targets.Length; i++)
                if ((uint)targets[i] >= (uint)vocab)
                    throw new ArgumentOutOfRangeException(nameof(targets), $"target {targets[i]} at position {i} is outside [0, {vocab})");
        }
    }
}
