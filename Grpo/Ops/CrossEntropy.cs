// Cross-entropy: the weighted mean, over N rows of logits, of the negative log-probability of
// each row's target class (the supervised fine-tuning loss).
//
//   loss = sum_i w_i * (lse_i - x_i[t_i]) / W,   lse_i = ln sum_j e^(x_ij),   W = sum_i w_i
//   dx_ij = dloss * w_i / W * (softmax(x_i)_j - [j == t_i])
// Shapes: logits (N, V) or (..., V) with N rows in all; targets (N); weights (N) or null (all 1).
// When W is 0 (every row masked out) the loss is 0 and every gradient is 0.
// Hand-worked: uniform logits over V classes give softmax 1/V everywhere, so the loss is ln V.
// Each row's lse is kept from the forward so the backward needs no second reduction.
// Tests: Grpo.Tests/Ops/OpsBTests.cs.
using System.Numerics.Tensors;
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor CrossEntropy(Tensor logits, int[] targets, float[]? weights = null)
    {
        int vocab = SoftmaxRows.Width(logits, "CrossEntropy"), rows = targets.Length;
        if ((long)rows * vocab != logits.Size)
            throw new ArgumentException($"CrossEntropy: logits {ShapeText(logits)} do not hold {rows} rows (one per target)");
        if (weights != null && weights.Length != rows)
            throw new ArgumentException($"CrossEntropy: {weights.Length} weights for {rows} targets");
        SoftmaxRows.CheckTargets(targets, vocab, "CrossEntropy");

        float Weight(int row) => weights?[row] ?? 1f;
        double weightSum = 0;
        for (int i = 0; i < rows; i++) weightSum += Weight(i);
        if (OnGpu("CrossEntropy", logits))
            return CrossEntropyOnDevice(logits, targets, weights ?? Enumerable.Repeat(1f, rows).ToArray(), weightSum, rows, vocab);
        var logSumExps = new float[rows];
        var rowLosses = new float[rows];
        SoftmaxRows.For(rows, vocab, vocab, (r, scratch) =>
        {
            var row = logits.Data.AsSpan(r * vocab, vocab);
            logSumExps[r] = SoftmaxRows.LogSumExp(row, scratch);
            rowLosses[r] = logSumExps[r] - row[targets[r]];
        });
        // A row of weight 0 is left out rather than multiplied by 0, so a masked row whose loss is
        // infinite (its target's logit -inf) cannot turn the sum into NaN.
        double total = 0;
        for (int i = 0; i < rows; i++)
            if (Weight(i) != 0f) total += (double)Weight(i) * rowLosses[i];
        var loss = Tensor.Scalar(weightSum == 0 ? 0f : (float)(total / weightSum));

        Autograd.Record(loss, [logits], () =>
        {
            if (weightSum == 0) return;
            var dLogits = logits.GradOrCreate();
            float dLoss = loss.Grad![0];
            SoftmaxRows.For(rows, vocab, vocab, (r, scratch) =>
            {
                float coefficient = (float)(dLoss * Weight(r) / weightSum);
                if (coefficient == 0f) return;
                var dRow = dLogits.AsSpan(r * vocab, vocab);
                // dRow += coefficient * (softmax - onehot), softmax = e^(x - lse)
                TensorPrimitives.Subtract(logits.Data.AsSpan(r * vocab, vocab), logSumExps[r], scratch);
                TensorPrimitives.Exp(scratch, scratch);
                TensorPrimitives.MultiplyAdd(scratch, coefficient, dRow, dRow);
                dRow[targets[r]] -= coefficient;
            });
        });
        return loss;
    }

    /// <summary>The GPU path: token log-probs per row, their weighted mean, and the backward
    /// coefficient * (softmax - onehot) per row (Compute/Kernels/TokenLogProbKernels.cs).</summary>
    private static Tensor CrossEntropyOnDevice(Tensor logits, int[] targets, float[] weights, double weightSum, int rows, int vocab)
    {
        var device = logits.Device;
        var loss = Tensor.Empty(device, []);
        var logSumExps = new DeviceArray(device, rows);
        var deviceTargets = DeviceArray.Keep(device.UploadToPool<int>(targets));
        var deviceWeights = DeviceArray.Keep(device.UploadToPool<float>(weights));
        using (var logProbs = device.Pool.Rent<float>(rows))
        {
            TokenLogProbKernels.Forward(device, logits.View, deviceTargets.View, logSumExps.View, logProbs.View, rows, vocab);
            TokenLogProbKernels.WeightedLoss(device, logProbs.View, deviceWeights.View, weightSum, loss.View);
        }
        void Free() { logSumExps.Release(); deviceTargets.Dispose(); deviceWeights.Dispose(); }
        Autograd.Record(loss, [logits], () =>
        {
            float dLoss = loss.GradToArray()![0];
            if (weightSum != 0)
                TokenLogProbKernels.Backward(device, logits.View, logSumExps.View, deviceTargets.View, deviceWeights.View,
                    (float)(dLoss / weightSum), logits.GradView(), rows, vocab);
            Free();
        });
        if (!loss.RequiresGrad) Free();
        return loss;
    }
}
