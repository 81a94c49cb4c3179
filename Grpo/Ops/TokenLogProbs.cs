// Token log-probabilities: for each position, the log-probability the model gives the token that
// was actually there, log pi(o_t | q, o_<t). This is what the GRPO loss reads for the policy, the
// old policy and the reference model.
//
//   y_i = x_i[t_i] - lse_i,   lse_i = ln sum_j e^(x_ij)
//   dx_ij = dy_i * ([j == t_i] - softmax(x_i)_j)
// Shapes: logits (..., V) -> y (...) (the last axis removed); targets has one entry per row.
// Computed directly from each row's lse (kept from the forward), not through a full (..., V)
// log-softmax graph, which would cost a second V-wide tensor per step.
// Hand-worked: logits [0, ln 3] with target 1 give ln(3/4) = -0.2877; dy = 1 gives dx = [-0.25, 0.25].
// Tests: Grpo.Tests/Ops/OpsBTests.cs.
using System.Numerics.Tensors;
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor TokenLogProbs(Tensor logits, int[] targets)
    {
        int vocab = SoftmaxRows.Width(logits, "TokenLogProbs"), rows = targets.Length;
        if ((long)rows * vocab != logits.Size)
            throw new ArgumentException($"TokenLogProbs: logits {ShapeText(logits)} do not hold {rows} rows (one per target)");
        SoftmaxRows.CheckTargets(targets, vocab, "TokenLogProbs");
        if (OnGpu("TokenLogProbs", logits)) return TokenLogProbsOnDevice(logits, targets, rows, vocab);

        var logProbs = new Tensor(new float[rows], logits.Shape[..^1]);
        var logSumExps = new float[rows];
        SoftmaxRows.For(rows, vocab, vocab, (r, scratch) =>
        {
            var row = logits.Data.AsSpan(r * vocab, vocab);
            logSumExps[r] = SoftmaxRows.LogSumExp(row, scratch);
            logProbs.Data[r] = row[targets[r]] - logSumExps[r];
        });

        Autograd.Record(logProbs, [logits], () =>
        {
            var dLogits = logits.GradOrCreate();
            var dy = logProbs.Grad!;
            SoftmaxRows.For(rows, vocab, vocab, (r, scratch) =>
            {
                if (dy[r] == 0f) return;
                var dRow = dLogits.AsSpan(r * vocab, vocab);
                // dRow += dy * (onehot - softmax), softmax = e^(x - lse)
                TensorPrimitives.Subtract(logits.Data.AsSpan(r * vocab, vocab), logSumExps[r], scratch);
                TensorPrimitives.Exp(scratch, scratch);
                TensorPrimitives.MultiplyAdd(scratch, -dy[r], dRow, dRow);
                dRow[targets[r]] += dy[r];
            });
        });
        return logProbs;
    }

    /// <summary>The GPU path: one group per row forms log-sum-exp and the target's log-prob; the backward
    /// adds dy_r (onehot - softmax) into each row (Compute/Kernels/TokenLogProbKernels.cs).</summary>
    private static Tensor TokenLogProbsOnDevice(Tensor logits, int[] targets, int rows, int vocab)
    {
        var device = logits.Device;
        var logProbs = Tensor.Empty(device, logits.Shape[..^1]);
        var logSumExps = new DeviceArray(device, rows);
        var deviceTargets = DeviceArray.Keep(device.UploadToPool<int>(targets));   // its own copy: the backward reads it later
        TokenLogProbKernels.Forward(device, logits.View, deviceTargets.View, logSumExps.View, logProbs.View, rows, vocab);
        Autograd.Record(logProbs, [logits], () =>
        {
            // dLogits += (-1) * dy_r * (softmax - onehot)
            TokenLogProbKernels.Backward(device, logits.View, logSumExps.View, deviceTargets.View, logProbs.GradView(), -1f, logits.GradView(), rows, vocab);
            logSumExps.Release();
            deviceTargets.Dispose();
        });
        if (!logProbs.RequiresGrad) { logSumExps.Release(); deviceTargets.Dispose(); }
        return logProbs;
    }
}
